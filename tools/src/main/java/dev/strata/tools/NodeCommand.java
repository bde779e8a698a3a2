package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.cluster.Msg;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
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

    @Mixin
    EngineOptions engineOptions = new EngineOptions();

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

    @Option(names = {"-m", "--model"}, description = "The GGUF file (the router's), or with " +
        "--param-server NAME@VERSION, NAME:LABEL or NAME of a model in the parameter service.")
    String model;

    @Option(names = "--param-server", paramLabel = "HOST:PORT", description = "Stream the weights from this " +
        "parameter service (its admin API) instead of mapping a file.")
    String paramServer;

    @Option(names = "--token", description = "The parameter service's token (default: $STRATA_TOKEN).")
    String token;

    @Option(names = "--memory-budget", description = "Memory for the streamed weights (default: the whole model).")
    String memoryBudget;

    @Option(names = "--node-id", description = "Name of the node (default: ROLE-PID).")
    String nodeId;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--batch-invariant", negatable = true, defaultValue = "true", fallbackValue = "true",
        description = "Attention with the same arithmetic however tokens are batched, so a request moved to another " +
            "node after a failure continues with the same tokens (default: on; --no-batch-invariant for the " +
            "faster blocked prefill attention).")
    boolean batchInvariant;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter err = spec.commandLine().getErr();
        if (model == null)
        {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "Missing required option: " +
                "'--model=<model>'");
        }
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
        try (Transport transport = Transport.launch(tc); ThreadPool pool = new ThreadPool(threads))
        {
            if (paramServer != null)
            {
                final dev.strata.paramclient.ParamClient client = new dev.strata.paramclient.ParamClient(paramServer,
                    token != null ? token : System.getenv("STRATA_TOKEN"));
                final ModelCommand.Ref ref = ModelCommand.Ref.parse(model);
                final long budget = memoryBudget == null ? Long.MAX_VALUE / 4 : Sizes.parse(memoryBudget);
                final String name = nodeId != null ? nodeId : r.name().toLowerCase(java.util.Locale.ROOT) + "-" +
                    ProcessHandle.current().pid();
                try (dev.strata.serve.ParamCatalog catalog = new dev.strata.serve.ParamCatalog(client, name,
                    dev.strata.compute.stream.StreamingWeightSource.Options.defaults(budget), c -> settings(c.pool(pool))))
                {
                    final dev.strata.serve.ServedModel served = catalog.launch(ref.model(), ref.number(client));
                    runAgent(err, r, (Engine)served.engine(), transport, routerChannel, channel, served.id());
                    stop.await();
                    agent.close(); // before the engine: no message handled by a closed engine
                }
            }
            else
            {
                final Path file = Path.of(model);
                try (GgufWeightSource weights = new GgufWeightSource(GgufFile.open(file), true))
                {
                    final Tokenizer tokenizer = Tokenizer.fromGguf(weights.file().metadata());
                    try (Engine engine = Engine.launch(settings(new Engine.Context().pool(pool)).weights(weights)
                        .tokenizer(tokenizer).modelVersion(ServeCommand.fileVersion(file))
                        .name("strata-engine-" + r.name().toLowerCase(java.util.Locale.ROOT))))
                    {
                        runAgent(err, r, engine, transport, routerChannel, channel, file.getFileName().toString());
                        stop.await();
                        agent.close(); // before the engine: no message handled by a closed engine
                    }
                }
            }
        }
        finally
        {
            closed.countDown();
        }
        return 0;
    }

    private NodeAgent agent;

    private Engine.Context settings(final Engine.Context c)
    {
        return engineOptions.apply(c).batchInvariant(batchInvariant);
    }

    /** Starts the node's agent; the caller closes it before the engine. */
    private void runAgent(final PrintWriter err, final Msg.Role r, final Engine engine, final Transport transport,
        final String routerChannel, final String channel, final String what)
    {
        agent = NodeAgent.launch(new NodeAgent.Context().engine(engine).aeron(transport.aeron()).node(nodeId).role(r)
            .router(routerChannel, NodeAgent.ROUTER_STREAM)
            .listen(channel, NodeAgent.defaultStream(ProcessHandle.current().pid())));
        err.printf("node %s (%s) pid %d: %s, KV pool %s in %d blocks, warmed up in %.1f s, router %s%n", agent.node(),
            r.name().toLowerCase(java.util.Locale.ROOT), ProcessHandle.current().pid(), what,
            Sizes.format(engine.stats().kvBlocks() * engine.stats().kvBlockBytes()), engine.stats().kvBlocks(),
            engine.warmUpNanos() / 1e9, routerChannel);
        err.flush();
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
