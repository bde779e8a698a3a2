package dev.strata.serve;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A split deployment's catalog: the canary's share of users, sticky per user; pins by name and number; and the count
 * of the canary's requests, which its end waits on.
 */
class ClusterCatalogTest
{
    private final ServedModel stable = new ServedModel("m", null, null, null, 0);
    private final ServedModel canary = new ServedModel("m@2", null, null, null, 0);

    @Test
    void shouldSendEachUserToOneVersionInTheCanarysShare()
    {
        final ClusterCatalog catalog = new ClusterCatalog(stable, List.of("alias"));
        for (int u = 0; u < 50; u++)
        {
            try (ModelCatalog.Lease l = catalog.acquire("m", null, "user-" + u))
            {
                assertSame(stable, l.model(), "no canary yet");
            }
        }
        catalog.canary(canary, 2, 30);
        int toCanary = 0;
        for (int u = 0; u < 2_000; u++)
        {
            final String user = "user-" + u;
            final ServedModel first;
            try (ModelCatalog.Lease l = catalog.acquire(u % 2 == 0 ? "m" : "alias", null, user))
            {
                first = l.model();
            }
            for (int again = 0; again < 3; again++)
            {
                try (ModelCatalog.Lease l = catalog.acquire("m", null, user))
                {
                    assertSame(first, l.model(), user + " keeps its version");
                }
            }
            toCanary += first == canary ? 1 : 0;
        }
        // 30% of 2,000 users: a binomial with a standard deviation of about 20
        assertTrue(toCanary > 500 && toCanary < 700, toCanary + " of 2000 users on a 30% canary");
        assertEquals(0, catalog.canary().inFlight().get(), "every lease closed");
    }

    @Test
    void shouldReachTheCanaryByNameOrNumberAndRefuseOtherVersions()
    {
        final ClusterCatalog catalog = new ClusterCatalog(stable, List.of());
        assertThrows(ApiError.class, () -> catalog.acquire("m@2", null, null), "no canary: m@2 is not served");
        catalog.canary(canary, 2, 1);
        try (ModelCatalog.Lease l = catalog.acquire("m@2", null, "anyone"))
        {
            assertSame(canary, l.model());
        }
        try (ModelCatalog.Lease l = catalog.acquire("m", "2", "anyone"))
        {
            assertSame(canary, l.model());
        }
        try (ModelCatalog.Lease l = catalog.acquire("m", "m", "anyone"))
        {
            assertSame(stable, l.model());
        }
        assertEquals(404, assertThrows(ApiError.class, () -> catalog.acquire("m", "3", null)).status);
        assertEquals(404, assertThrows(ApiError.class, () -> catalog.acquire("other", null, null)).status);
        assertEquals(List.of(stable, canary), catalog.models());
        assertThrows(IllegalArgumentException.class, () -> catalog.canary(canary, 2, 100));
    }

    @Test
    void shouldCountTheCanarysRequestsUntilTheirLeasesClose()
    {
        final ClusterCatalog catalog = new ClusterCatalog(stable, List.of());
        catalog.canary(canary, 2, 50);
        final ModelCatalog.Lease running = catalog.acquire("m@2", null, null);
        catalog.canary(canary, 2, 60); // a new weight: the same canary, the same count
        final ModelCatalog.Lease second = catalog.acquire("m", "2", null);
        final ClusterCatalog.Canary ended = catalog.endCanary();
        assertEquals(2, ended.inFlight().get(), "two requests still run on the ended canary");
        for (int u = 0; u < 100; u++)
        {
            try (ModelCatalog.Lease l = catalog.acquire("m", null, "user-" + u))
            {
                assertSame(stable, l.model(), "no new request goes to an ended canary");
            }
        }
        assertEquals(404, assertThrows(ApiError.class, () -> catalog.acquire("m@2", null, null)).status);
        running.close();
        running.close(); // closing twice counts once
        assertEquals(1, ended.inFlight().get());
        second.close();
        assertEquals(0, ended.inFlight().get());
        assertNull(catalog.canary());
        assertEquals(List.of(stable), catalog.models());
    }
}
