package dev.strata.paramserver;

import dev.strata.paramserver.RegistryCommand.AcquireLease;
import dev.strata.paramserver.RegistryCommand.Canary;
import dev.strata.paramserver.RegistryCommand.Commit;
import dev.strata.paramserver.RegistryCommand.CreateVersion;
import dev.strata.paramserver.RegistryCommand.Delete;
import dev.strata.paramserver.RegistryCommand.Promote;
import dev.strata.paramserver.RegistryCommand.ReleaseLease;
import dev.strata.paramserver.RegistryCommand.Rollback;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ModelRegistryTest
{
    private static final String D1 = "a".repeat(64);
    private static final String D2 = "b".repeat(64);

    @TempDir
    Path dir;

    @Test
    void shouldWalkTheLifecycleWithLabels()
    {
        final ModelRegistry r = new ModelRegistry();
        assertEquals(1, r.apply(new CreateVersion("llama", D1)).number());
        assertThrows(RegistryException.class, () -> r.resolve("llama", "1"), "uploading versions are invisible");
        r.apply(new Commit("llama", 1, D1));
        r.apply(new Promote("llama", 1));
        assertEquals(1, r.resolve("llama", "stable").number());
        r.apply(new CreateVersion("llama", D2));
        r.apply(new Commit("llama", 2, D2));
        r.apply(new Canary("llama", 2, 10));
        assertEquals(2, r.resolve("llama", "canary").number());
        assertEquals(10, r.resolve("llama", "canary").canaryWeight());
        r.apply(new Promote("llama", 2));
        assertEquals(2, r.resolve("llama", "stable").number());
        assertEquals(VersionState.RETIRED, r.resolve("llama", "1").state());
        r.apply(new Rollback("llama"));
        assertEquals(1, r.resolve("llama", "stable").number());
        assertEquals(VersionState.RETIRED, r.resolve("llama", "2").state());
    }

    @Test
    void shouldRejectInvalidTransitionsWithoutChangingState()
    {
        final ModelRegistry r = new ModelRegistry();
        r.apply(new CreateVersion("m", D1));
        final String before = r.snapshot();
        assertThrows(RegistryException.class, () -> r.apply(new Promote("m", 1)), "uploading cannot be promoted");
        assertThrows(RegistryException.class, () -> r.apply(new Commit("m", 1, "not-a-digest")));
        assertThrows(RegistryException.class, () -> r.apply(new Commit("m", 7, D1)), "unknown version");
        assertThrows(RegistryException.class, () -> r.apply(new Commit("m", 1, D2)), "not the manifest it was created for");
        assertThrows(RegistryException.class, () -> r.apply(new CreateVersion("m", "short")));
        assertThrows(RegistryException.class, () -> r.apply(new Rollback("m")), "nothing to roll back to");
        r.apply(new Commit("m", 1, D1));
        assertThrows(RegistryException.class, () -> r.apply(new Canary("m", 1, 0)));
        assertThrows(RegistryException.class, () -> r.apply(new Canary("m", 1, 100)));
        assertEquals(before.replace("UPLOADING, manifestDigest=" + D1, "COMMITTED, manifestDigest=" + D1), r.snapshot());
    }

    @Test
    void shouldRejectBadNames()
    {
        final ModelRegistry r = new ModelRegistry();
        for (final String bad : List.of("", "../etc", "a/b", ".hidden", "x".repeat(65), "pipe|name", "sp ace"))
        {
            assertThrows(RegistryException.class, () -> r.apply(new CreateVersion(bad, D1)), bad);
        }
        assertThrows(RegistryException.class, () -> r.resolve("nobody", "stable"));
    }

    @Test
    void shouldKeepLeasedVersionFromDeletionUntilLeaseEnds()
    {
        final ModelRegistry r = new ModelRegistry();
        r.apply(new CreateVersion("m", D1));
        r.apply(new Commit("m", 1, D1));
        r.advanceClock(1_000);
        r.apply(new AcquireLease("node-1", "m", 1, 5_000));
        final RegistryException ex = assertThrows(RegistryException.class, () -> r.apply(new Delete("m", 1, 2_000)));
        assertTrue(ex.getMessage().contains("leased by node-1"), ex.getMessage());
        r.apply(new Delete("m", 1, 6_000)); // the lease expired by the command's clock
        assertEquals(VersionState.DELETED, r.versionsOf("m").get(0).state());

        r.apply(new CreateVersion("m", D2));
        r.apply(new Commit("m", 2, D2));
        r.apply(new AcquireLease("node-2", "m", 2, 60_000));
        r.apply(new ReleaseLease("node-2", "m", 2));
        r.apply(new Delete("m", 2, 7_000));
    }

    @Test
    void shouldSurviveRestartAndIgnoreTornLastLine() throws Exception
    {
        final Path log = dir.resolve("registry.log");
        final String snapshot;
        try (RegistryLog l = new RegistryLog(log))
        {
            l.execute(new CreateVersion("llama", D1));
            l.execute(new Commit("llama", 1, D1));
            l.execute(new Promote("llama", 1));
            l.execute(new CreateVersion("llama", D2));
            assertThrows(RegistryException.class, () -> l.execute(new Promote("llama", 2)));
            snapshot = l.registry().snapshot();
        }
        Files.writeString(log, "Commit|llama|2|" + D2.substring(0, 10), StandardOpenOption.APPEND); // torn append
        try (RegistryLog l = new RegistryLog(log))
        {
            assertEquals(snapshot, l.registry().snapshot(), "replay gives the same state; the torn line is ignored");
            l.execute(new Commit("llama", 2, D2));
        }
        try (RegistryLog l = new RegistryLog(log))
        {
            assertEquals(VersionState.COMMITTED, l.registry().resolve("llama", "2").state());
            assertEquals(1, l.registry().resolve("llama", "stable").number());
        }
    }
}
