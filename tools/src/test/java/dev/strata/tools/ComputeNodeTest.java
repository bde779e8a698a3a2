package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.stream.BlockChannel;
import dev.strata.compute.stream.ComputeNode;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramserver.ParamService;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The compute node as a component: context, launch that undoes itself on failure, close; shared resources. */
class ComputeNodeTest
{
    private static final String TOKEN = "node-token";
    private static final int[] PROMPT = {1, 72, 101, 108, 108, 111};

    @TempDir
    static Path models;

    @TempDir
    Path data;

    static Path gguf;

    @BeforeAll
    static void synthesize() throws Exception
    {
        gguf = models.resolve("small.gguf");
        SyntheticModel.write(gguf, SyntheticModel.Shape.parse("dim=128,layers=4,heads=4,kv=2,ffn=256"),
            GgmlType.Q8_0, null, 5);
    }

    private static void upload(final ParamService service)
    {
        final CliTest.Run r = CliTest.run("model", "upload", gguf.toString(), "--name", "small", "--label", "stable",
            "--server", "localhost:" + service.adminPort(), "--token", TOKEN);
        assertEquals(0, r.code(), r.err());
    }

    @Test
    void shouldNameTheBadSettingWhenConcluding()
    {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ComputeNode.Context().model("m").conclude())
            .getMessage().startsWith("invalid paramServer=null"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ComputeNode.Context().paramServer("h:1")
            .conclude()).getMessage().startsWith("invalid model=null"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new ComputeNode.Context().paramServer("h:1")
            .model("m").leaseMillis(10).conclude()).getMessage().startsWith("invalid leaseMillis=10"));
    }

    /** A launch that fails at the weights (a budget too small) must not leave the version leased. */
    @Test
    void shouldReleaseTheLeaseWhenTheWeightsCannotOpen() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)))
        {
            upload(service);
            final String server = "localhost:" + service.adminPort();
            final IllegalArgumentException tooSmall = assertThrows(IllegalArgumentException.class,
                () -> ComputeNode.launch(new ComputeNode.Context().paramServer(server).token(TOKEN).model("small")
                    .nodeName("n1").options(StreamingWeightSource.Options.defaults(1024))));
            assertTrue(tooSmall.getMessage().contains("too small"), tooSmall.getMessage());
            assertEquals(Map.of(), new ParamClient(server, TOKEN).show("small", "1").leases(),
                "the lease taken by the half-launched node was released");
        }
    }

    /**
     * In one process the node uses the service's transport (IPC on the same media driver) and registers its
     * prefetch meters in the shared registry; closing the node closes neither, and releases its lease.
     */
    @Test
    void shouldShareTheProcessTransportAndRegistry() throws Exception
    {
        final SimpleMeterRegistry registry = new SimpleMeterRegistry();
        final int[] expected = StreamingGenerationTest.local(gguf);
        try (Transport shared = Transport.launch(new TransportContext());
            ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)
                .transport(shared)))
        {
            upload(service);
            final String server = "localhost:" + service.adminPort();
            try (ComputeNode node = ComputeNode.launch(new ComputeNode.Context().paramServer(server).token(TOKEN)
                .model("small").nodeName("n2").transport(shared).meterRegistry(registry)
                .options(StreamingWeightSource.Options.defaults(1L << 30).withMode(BlockChannel.Mode.IPC))))
            {
                assertEquals(1, node.model().version());
                final long placedBefore = service.blockServer().placedBytes();
                assertArrayEquals(expected, StreamingGenerationTest.generate(node.weights(), PROMPT, expected.length,
                    t -> true));
                if (dev.strata.transport.bulk.SharedRegion.roomFor(1L << 30))
                {
                    // over IPC the unit buffers are shared regions the service copies the blocks into
                    assertTrue(service.blockServer().placedBytes() > placedBefore, "blocks placed directly");
                }
                assertNotNull(registry.find("strata.prefetch.coverage").gauge(), "the node's meters are shared");
                assertTrue(new ParamClient(server, TOKEN).show("small", "1").leases().containsKey("n2"));
            }
            assertFalse(shared.aeron().isClosed(), "the shared transport outlives the node");
            assertEquals(Map.of(), new ParamClient(server, TOKEN).show("small", "1").leases());
        }
    }
}
