package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.cluster.Msg;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * {@code strata node}: one compute node of a split deployment, in its own process: an engine over the model, and the
 * Aeron agent that registers with the router, heartbeats, runs the halves of requests the router sends and moves
 * KV blocks to decode nodes ({@link NodeAgent}). {@code strata serve --prefill N --decode M} starts these itself.
 */
@Command(name = "node", description = "Run a compute node (prefill, decode or both) for a router started with " +
    "strata serve --prefill/--decode; 'strata node role NODE ROLE' switches a node's role.",
    subcommands = NodeCommand.Role.class)
final class NodeCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = "--role", defaultValue = "both", description = "prefill, decode or both (default: " +
        "${DEFAULT-VALUE}).")
    String role;

    @Option(names = "--router", defaultValue = "aeron:ipc", description = "Where the router listens: aeron:ipc " +
        "(same host, with --aeron-dir of the router's media driver) or HOST:PORT (UDP). Default: ${DEFAULT-VALUE}.")
    String router;

    @Option(names = "--listen", description = "HOST:PORT (UDP) this node listens on; default: aeron:ipc when the " +
        "router is IPC.")
    String listen;

    @Option(names = "--aeron-dir", description = "Use the media driver of this directory (the router's, for IPC) " +
        "instead of an embedded one.")
    String aeronDir;

    @Option(names = {"-m", "--model"}, required = true, description = "The GGUF file (the router's).")
    Path model;

    @Option(names = "--node-id", description = "Name of the node (default: ROLE-PID).")
    String nodeId;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--kv-memory", defaultValue = "1G", description = "KV block pool (default: ${DEFAULT-VALUE}).")
    String kvMemory;

    @Option(names = "--kv-type", defaultValue = "f16", description = "f16 or f32 (default: ${DEFAULT-VALUE}).")
    String kvType;

    @Option(names = "--max-batch", defaultValue = "32", description = "Most sequences per step.")
    int maxBatch;

    @Option(names = "--max-prefill-tokens", defaultValue = "512", description = "Most prompt tokens per step.")
    int maxPrefillTokens;

    @Option(names = "--context", description = "Most positions per sequence (default: the model's).")
    int context;

    @Option(names = "--batch-invariant", negatable = true, defaultValue = "true", fallbackValue = "true",
        description = "Attention with the same arithmetic however tokens are batched, so a request moved to another " +
            "node after a failure continues with the same tokens (default: on; --no-batch-invariant for the " +
            "faster blocked prefill attention).")
    boolean batchInvariant;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter err = spec.commandLine().getErr();
        final Msg.Role r = Msg.Role.parse(role);
        final boolean ipc = router.startsWith("aeron:ipc");
        if (ipc && aeronDir == null)
        {
            throw new IllegalArgumentException("--router aeron:ipc needs --aeron-dir (the router's media driver); " +
                "across hosts give --router HOST:PORT and --listen HOST:PORT");
        }
        if (!ipc && listen == null)
        {
            throw new IllegalArgumentException("--router " + router + " is UDP: give --listen HOST:PORT for this node");
        }
        final String routerChannel = ipc ? router : udp(router);
        final String channel = listen == null ? "aeron:ipc" : udp(listen);
        final TransportContext tc = new TransportContext();
        if (aeronDir != null)
        {
            tc.aeronDirectory(aeronDir).embeddedDriver(false);
        }
        final CountDownLatch stop = new CountDownLatch(1);
        final CountDownLatch closed = new CountDownLatch(1);
        final Thread hook = new Thread(() ->
        {
            stop.countDown();
            try
            {
                closed.await(10, java.util.concurrent.TimeUnit.SECONDS);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }, "strata-node-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try (Transport transport = Transport.launch(tc);
            GgufWeightSource weights = new GgufWeightSource(GgufFile.open(model), true);
            ThreadPool pool = new ThreadPool(threads))
        {
            final var metadata = weights.file().metadata();
            final Tokenizer tokenizer = Tokenizer.fromGguf(metadata);
            try (Engine engine = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
                    .modelVersion(ServeCommand.fileVersion(model)).kvType(KvBlockPool.KvType.parse(kvType))
                    .kvMemory(Sizes.parse(kvMemory)).maxBatchSize(maxBatch).maxPrefillTokens(maxPrefillTokens)
                    .maxContext(context).batchInvariant(batchInvariant).name("strata-engine-" + r.name().toLowerCase(java.util.Locale.ROOT)));
                NodeAgent agent = NodeAgent.launch(new NodeAgent.Context().engine(engine).aeron(transport.aeron())
                    .node(nodeId).role(r).router(routerChannel, NodeAgent.ROUTER_STREAM)
                    .listen(channel, NodeAgent.defaultStream(ProcessHandle.current().pid()))))
            {
                err.printf("node %s (%s) pid %d: %s, KV pool %s in %d blocks, router %s%n", agent.node(),
                    r.name().toLowerCase(java.util.Locale.ROOT), ProcessHandle.current().pid(), model.getFileName(),
                    Sizes.format(engine.stats().kvBlocks() * engine.stats().kvBlockBytes()), engine.stats().kvBlocks(),
                    routerChannel);
                err.flush();
                stop.await();
            }
        }
        finally
        {
            closed.countDown();
        }
        return 0;
    }

    static String udp(final String hostPort)
    {
        final int colon = hostPort.lastIndexOf(':');
        if (colon <= 0)
        {
            throw new IllegalArgumentException("expected HOST:PORT, got '" + hostPort + "'");
        }
        return TransportContext.udpChannel(hostPort.substring(0, colon),
            Integer.parseInt(hostPort.substring(colon + 1)));
    }

    /** {@code strata node role NODE ROLE}: switch a node's role through the router's API. */
    @Command(name = "role", description = "Switch a node to prefill, decode or both: it takes no new work of its " +
        "old role, and what runs on it finishes there.")
    static final class Role implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;

        @Parameters(index = "0", description = "The node's name (strata nodes lists them).")
        String node;

        @Parameters(index = "1", description = "prefill, decode or both.")
        String role;

        @Option(names = "--router", defaultValue = "http://127.0.0.1:8080", description = "The router's API " +
            "(default: ${DEFAULT-VALUE}).")
        String url;

        @Override
        public Integer call() throws Exception
        {
            Msg.Role.parse(role);
            final String body = new ObjectMapper().createObjectNode().put("node", node).put("role", role).toString();
            final HttpResponse<String> r = NodesCommand.http(url, "/v1/nodes", body);
            if (r.statusCode() != 200)
            {
                spec.commandLine().getErr().println("error: " + NodesCommand.message(r.body()));
                return 1;
            }
            spec.commandLine().getOut().println(node + " is now " + role.toLowerCase(java.util.Locale.ROOT));
            return 0;
        }
    }
}
