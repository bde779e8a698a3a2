package dev.strata.paramserver;

import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The service's context, launch and close: settings checked once, nothing left open by a failed launch. */
class ParamServiceLifecycleTest
{
    @TempDir
    Path dir;

    @Test
    void shouldNameTheBadSettingWhenConcluding()
    {
        assertEquals("invalid dataDir=null: the service needs a data directory", assertThrows(
            IllegalArgumentException.class, () -> new ParamService.Context().conclude()).getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ParamService.Context().dataDir(dir)
            .memoryBudgetBytes(1).conclude()).getMessage().startsWith("invalid memoryBudgetBytes=1"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ParamService.Context().dataDir(dir)
            .adminPort(70_000).conclude()).getMessage().startsWith("invalid adminPort=70000"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ParamService.Context().dataDir(dir)
            .readToken("read-only-token").conclude()).getMessage().startsWith("invalid readToken"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ParamService.Context().dataDir(dir)
            .token("same-token").readToken("same-token").conclude()).getMessage().startsWith("invalid readToken"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ParamService.Context().dataDir(dir)
            .udpEndpoint("nowhere").conclude()).getMessage().startsWith("invalid udpEndpoint=nowhere"));
    }

    /**
     * The admin API is the last thing a launch opens: when its port is taken, everything opened before it (the
     * data directory's lock, RocksDB, the index, the registry log, the transport, the block server's thread) must
     * be closed again, or the next launch on the same directory finds it locked.
     */
    @Test
    void shouldCloseWhatItOpenedWhenALaterStepFails() throws Exception
    {
        final Path data = dir.resolve("data");
        try (ServerSocket taken = new ServerSocket(0))
        {
            final Exception failed = assertThrows(Exception.class, () -> ParamService.launch(
                new ParamService.Context().dataDir(data).adminPort(taken.getLocalPort())));
            assertFalse(String.valueOf(failed.getMessage()).contains("in use by another parameter service"),
                "it failed at the admin port, after opening the rest: " + failed);
        }
        final long agentThreads = Thread.getAllStackTraces().keySet().stream()
            .filter(t -> t.getName().equals("strata-block-server")).count();
        assertEquals(0, agentThreads, "the block server's agent thread was stopped");
        try (ParamService again = ParamService.launch(new ParamService.Context().dataDir(data)))
        {
            assertTrue(again.adminPort() > 0, "the same data directory launches again");
        }
    }

    @Test
    void shouldShareTheTransportAndRegistryItIsGivenWithoutClosingThem() throws Exception
    {
        final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        try (Transport shared = Transport.launch(new TransportContext()))
        {
            try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(dir.resolve("a"))
                .transport(shared).meterRegistry(registry)))
            {
                assertEquals(shared.context().aeronDirectory(), service.endpoints().aeronDir());
                assertTrue(registry.scrape().contains("strata_models"), "the service's meters are in the shared one");
            }
            assertFalse(shared.aeron().isClosed(), "a shared transport outlives the service");
            try (ParamService second = ParamService.launch(new ParamService.Context().dataDir(dir.resolve("b"))
                .transport(shared)))
            {
                assertEquals(shared.context().aeronDirectory(), second.endpoints().aeronDir());
            }
        }
        registry.close();
    }
}
