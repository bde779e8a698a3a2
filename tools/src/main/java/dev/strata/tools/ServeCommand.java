package dev.strata.tools;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.serve.OpenAiServer;
import dev.strata.serve.ServedModel;
import dev.strata.serve.SingleModelCatalog;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * {@code strata serve}: the OpenAI-compatible API over the engine. The default is the embedded stack in one JVM:
 * a parameter service over {@code --data-dir} (a GGUF file given as the model is imported on first start,
 * content-addressed, so a second start sends nothing), a compute node that streams the version's weights from it,
 * and the router (the HTTP API, resolving names, labels, pins and the canary share per request). {@code --direct}
 * serves a GGUF file straight from its mapping instead. Stops cleanly on Ctrl-C: new requests get 503, the HTTP
 * server stops, the engines end what runs, the service closes its stores.
 */
@Command(name = "serve", description = "Serve models over an OpenAI-compatible HTTP API (/v1/completions, " +
    "/v1/chat/completions, /v1/models; streaming with server-sent events), with an embedded parameter service " +
    "(or --direct from a GGUF file).")
final class ServeCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Mixin
    EngineOptions engineOptions = new EngineOptions();

    @Option(names = {"-m", "--model"}, required = true, description = "A GGUF file (imported into the parameter " +
        "service as --served-name), or NAME, NAME:LABEL, NAME@VERSION of a model already there (split " +
        "deployments follow NAME's stable label or LABEL to the version it names; following the stable label, " +
        "they also run NAME's canary on nodes of its own for its share of requests).")
    String model;

    @Option(names = "--direct", description = "Serve the GGUF file straight from its mapping, without a parameter " +
        "service.")
    boolean direct;

    @Option(names = "--param-server", paramLabel = "HOST:PORT", description = "Use a running parameter service " +
        "(strata param-server) instead of an embedded one: this process is then a node and the router.")
    String paramServer;

    @Option(names = "--data-dir", description = "The parameter service's data (default: ~/.strata/data).")
    Path dataDir;

    @Option(names = "--admin-port", description = "The parameter service's admin API (default: --port + 1; " +
        "strata model ... --server HOST:PORT works against it).")
    Integer adminPort;

    @Option(names = "--token", description = "Admin token (default: $STRATA_TOKEN, else one generated into the " +
        "data directory, mode 0600).")
    String token;

    @Option(names = "--token-file", paramLabel = "FILE", description = "Read the token from this file (with " +
        "--param-server, that service's read-only node token is enough unless FILE.gguf must be uploaded).")
    Path tokenFile;

    @Option(names = "--memory-budget", description = "Node memory for each served version's weights (default: " +
        "the whole model).")
    String memoryBudget;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Interface to listen on (default: " +
        "${DEFAULT-VALUE}; 0.0.0.0 for all).")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "HTTP port (default: ${DEFAULT-VALUE}; 0 picks " +
        "one).")
    int port;

    @Option(names = "--api-key", description = "Require Authorization: Bearer KEY (default: $STRATA_API_KEY; " +
        "required when --host is not a loopback address).")
    String apiKey;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--prefill", description = "Start this many prefill node processes (split deployment: the " +
        "model must be a GGUF file; this process is the router).")
    int prefillNodes;

    @Option(names = "--decode", description = "Start this many decode node processes (split deployment).")
    int decodeNodes;

    @Option(names = "--both", description = "Start this many node processes that run whole requests (colocated, " +
        "through the same router).")
    int bothNodes;

    @Option(names = "--node-threads", description = "Compute threads of each node process (default: the " +
        "processors divided among the nodes, at least 1).")
    Integer nodeThreads;

    @Option(names = "--cpus", description = "Pin node processes to CPUs with taskset: 'auto' (node i on CPU i when " +
        "there are enough), 'none', or lists per node separated by '/', e.g. 0/1 or 0-1/2-3 (default: auto).")
    String cpus = "auto";

    @Option(names = "--router-cpus", description = "Pin this process (router, HTTP server, media driver) with " +
        "taskset: 'auto' (the prefill nodes' CPUs when a split's nodes are pinned: decode cores then run only decode " +
        "steps, and the prefill absorbs the router's work in its TTFT), 'none', or a CPU list (default: auto).")
    String routerCpus = "auto";

    @Option(names = "--batch-invariant", negatable = true, defaultValue = "true", fallbackValue = "true",
        description = "Node processes attend with the same arithmetic however tokens are batched, so a request " +
            "moved after a node failure continues with the same tokens (default: on).")
    boolean batchInvariant;

    @Option(names = "--cluster-listen", paramLabel = "HOST:PORT", description = "The router also listens here " +
        "(UDP) for nodes on other hosts: strata node --router HOST:PORT --listen THEIR_HOST:PORT.")
    String clusterListen;

    @Option(names = "--auto-ratio", description = "Let the router move nodes between the prefill and decode pools " +
        "when one pool stays the bottleneck for --ratio-window-s (targets --ttft-target-ms, --tpot-target-ms).")
    boolean autoRatio;

    @Option(names = "--ratio-window-s", defaultValue = "10", description = "How long a pool must stay the " +
        "bottleneck before a node switches (default: ${DEFAULT-VALUE}).")
    long ratioWindowSeconds;

    @Option(names = "--ttft-target-ms", defaultValue = "2000", description = "Prefill delay (dispatch to KV at the " +
        "decode node) above which prefill is the bottleneck (default: ${DEFAULT-VALUE}).")
    long ttftTargetMillis;

    @Option(names = "--tpot-target-ms", defaultValue = "200", description = "Time per output token above which " +
        "decode is the bottleneck (default: ${DEFAULT-VALUE}).")
    long tpotTargetMillis;

    @Option(names = "--node-timeout-ms", defaultValue = "2000", description = "A node that sends no heartbeat for " +
        "this long is out of rotation and its requests move (default: ${DEFAULT-VALUE}).")
    long nodeTimeoutMillis;

    /** How a split deployment that follows its model's label moves to another version. */
    enum SwitchMode
    {
        overlap,
        replace
    }

    @Option(names = "--switch", defaultValue = "overlap", description = "How a split deployment following its " +
        "model's label moves to another version: 'overlap' starts the new version's nodes beside the serving ones " +
        "and moves new requests once they are in rotation (no pause; the machine carries both sets meanwhile); " +
        "'replace' lets the serving nodes finish their requests and stop, then starts the new ones on the same CPUs " +
        "and memory while new requests wait, and runs no canary set (default: ${DEFAULT-VALUE}).")
    SwitchMode switchMode;

    @Option(names = "--switch-deadline-s", defaultValue = "600", description = "How long a new version's nodes may " +
        "take to join before the version is refused (default: ${DEFAULT-VALUE}).")
    long switchDeadlineSeconds;

    @Option(names = "--served-name", description = "Model id in the API (default: the file name without .gguf).")
    String servedName;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter err = spec.commandLine().getErr();
        final String key = apiKey != null ? apiKey : System.getenv("STRATA_API_KEY");
        if (key == null && !isLoopback(host))
        {
            throw new IllegalArgumentException("--host " + host + " is reachable from other machines: set --api-key " +
                "(or STRATA_API_KEY)");
        }
        if (threads < 1)
        {
            throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
        }
        if (switchDeadlineSeconds < 1)
        {
            throw new IllegalArgumentException("--switch-deadline-s must be at least 1, got " + switchDeadlineSeconds);
        }
        final CountDownLatch stop = new CountDownLatch(1);
        final CountDownLatch closed = new CountDownLatch(1);
        // Ctrl-C: let the main thread close the server and the engine before the JVM goes
        final Thread hook = new Thread(() ->
        {
            stop.countDown();
            try
            {
                closed.await(15, java.util.concurrent.TimeUnit.SECONDS);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }, "strata-serve-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        if (prefillNodes + decodeNodes + bothNodes > 0)
        {
            try
            {
                return new ClusterLauncher(this, err).run(key, stop);
            }
            finally
            {
                closed.countDown();
            }
        }
        if (!direct)
        {
            return embedded(err, key, stop, closed);
        }
        final Path model = Path.of(this.model);
        final String name = servedName != null ? servedName : model.getFileName().toString().replaceFirst(
            "(?i)\\.gguf$", "");
        final String version = fileVersion(model);
        try (GgufWeightSource weights = new GgufWeightSource(GgufFile.open(model), true);
            ThreadPool pool = new ThreadPool(threads))
        {
            final var metadata = weights.file().metadata();
            final Tokenizer tokenizer = Tokenizer.fromGguf(metadata);
            final ChatTemplate template = ChatTemplate.fromMetadata(metadata);
            try (Engine engine = Engine.launch(engineOptions.apply(new Engine.Context().weights(weights).pool(pool)
                .tokenizer(tokenizer).modelVersion(version).name("strata-engine-" + name)));
                OpenAiServer server = OpenAiServer.launch(new OpenAiServer.Context().host(host).port(port)
                    .apiKey(key).catalog(new SingleModelCatalog(new ServedModel(name, engine, tokenizer, template,
                        System.currentTimeMillis() / 1000), List.of(model.getFileName().toString())))))
            {
                err.printf("serving %s (context %d, KV pool %s in %d blocks) at http://%s:%d/v1 %s%n", name,
                    engine.maxContext(), Sizes.format(engine.stats().kvBlocks() * engine.stats().kvBlockBytes()),
                    engine.stats().kvBlocks(), host, server.port(), key != null ? "(API key required)" : "");
                if (template.isFallback())
                {
                    err.println("note: " + template.describe());
                }
                err.flush();
                stop.await();
                err.println("stopping");
                err.flush();
            }
        }
        finally
        {
            closed.countDown();
        }
        return 0;
    }

    /** The parameter service (unless --param-server names one), the node and the router in this JVM. */
    private Integer embedded(final PrintWriter err, final String apiKeyValue, final CountDownLatch stop,
        final CountDownLatch closed) throws Exception
    {
        if (paramServer != null)
        {
            final String t = Tokens.resolve(token, tokenFile, "STRATA_TOKEN");
            try (ThreadPool pool = new ThreadPool(threads))
            {
                return route(err, apiKeyValue, stop, new dev.strata.paramclient.ParamClient(paramServer, t), pool,
                    null, paramServer + " (token from " + (token != null ? "--token" : tokenFile != null ?
                        tokenFile.toString() : "the environment") + ")");
            }
            finally
            {
                closed.countDown();
            }
        }
        final Path data = dataDir != null ? dataDir : Path.of(System.getProperty("user.home"), ".strata", "data");
        Files.createDirectories(data);
        final String adminToken = adminToken(data);
        final int admin = adminPort != null ? adminPort : port == 0 ? 0 : port + 1;
        try (dev.strata.paramserver.ParamService service = dev.strata.paramserver.ParamService.launch(
                new dev.strata.paramserver.ParamService.Context().dataDir(data).adminPort(admin).token(adminToken));
            ThreadPool pool = new ThreadPool(threads))
        {
            final dev.strata.paramclient.ParamClient client = new dev.strata.paramclient.ParamClient(
                "127.0.0.1:" + service.adminPort(), adminToken);
            return route(err, apiKeyValue, stop, client, pool, service, "http://127.0.0.1:" + service.adminPort() +
                " (token in " + (token != null ? "--token" : System.getenv("STRATA_TOKEN") != null ? "$STRATA_TOKEN" :
                data.resolve(TOKEN_FILE)) + "), data " + data);
        }
        finally
        {
            closed.countDown();
        }
    }

    /** The node and the router over a parameter service: imports a file model, launches it, serves until stopped. */
    private Integer route(final PrintWriter err, final String apiKeyValue, final CountDownLatch stop,
        final dev.strata.paramclient.ParamClient client, final ThreadPool pool,
        final dev.strata.paramserver.ParamService service, final String where) throws Exception
    {
        final String ref = Files.isRegularFile(Path.of(model)) ? importFile(client, Path.of(model), servedName, err) :
            model;
        final long budget = memoryBudget == null ? Long.MAX_VALUE / 4 : Sizes.parse(memoryBudget);
        engineOptions.apply(new Engine.Context()); // a malformed size or type fails here, before the import
        final String node = "serve-" + ProcessHandle.current().pid();
        try (dev.strata.serve.ParamCatalog catalog = new dev.strata.serve.ParamCatalog(client, node,
                dev.strata.compute.stream.StreamingWeightSource.Options.defaults(budget),
                ctx -> engineOptions.apply(ctx.pool(pool))))
        {
            final ModelCommand.Ref r = ModelCommand.Ref.parse(ref);
            final ServedModel first = catalog.launch(r.model(), r.number(client));
            final OpenAiServer.Context api = new OpenAiServer.Context().host(host).port(port).apiKey(apiKeyValue)
                .catalog(catalog);
            if (service != null)
            {
                api.registry(service.metrics());
            }
            try (OpenAiServer server = OpenAiServer.launch(api))
            {
                err.printf("serving %s (requests name it %s, %s:LABEL or %s@VERSION) at http://%s:%d/v1%s%n" +
                    "parameter service: %s%n", first.id(), r.model(), r.model(), r.model(), host, server.port(),
                    apiKeyValue != null ? " (API key required)" : "", where);
                err.flush();
                stop.await();
                err.println("stopping");
                err.flush();
            }
        }
        return 0;
    }

    static final String TOKEN_FILE = "admin-token";

    /** The version of a model served from a file: its path, size and modification time. */
    static String fileVersion(final Path model) throws java.io.IOException
    {
        final Path file = model.toAbsolutePath();
        return "file:" + file + ":" + Files.size(file) + ":" + Files.getLastModifiedTime(file).toMillis();
    }

    /** --token, $STRATA_TOKEN, or the data directory's token file (created, mode 0600, on first start). */
    String adminToken(final Path data) throws java.io.IOException
    {
        final String given = Tokens.resolve(token, tokenFile, "STRATA_TOKEN");
        if (given != null)
        {
            return given;
        }
        final Path file = data.resolve(TOKEN_FILE);
        if (!Files.exists(file))
        {
            final byte[] random = new byte[24];
            new java.security.SecureRandom().nextBytes(random);
            final String t = java.util.HexFormat.of().formatHex(random);
            Files.createFile(file, java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
                java.nio.file.attribute.PosixFilePermissions.fromString("rw-------")));
            Files.writeString(file, t + "\n");
        }
        return Files.readString(file).strip();
    }

    /**
     * Imports a GGUF file as a version of --served-name (default: the file name) unless a committed version has
     * the same manifest already; promotes it when the name has no stable version. Returns {@code NAME@VERSION}.
     */
    static String importFile(final dev.strata.paramclient.ParamClient client, final Path file, final String servedName,
        final PrintWriter err) throws Exception
    {
        final String name = servedName != null ? servedName : file.getFileName().toString()
            .replaceFirst("(?i)\\.gguf$", "").replaceAll("[^A-Za-z0-9._-]", "-");
        try (GgufFile gguf = GgufFile.open(file))
        {
            final ModelImporter.Plan plan = ModelImporter.plan(gguf, name);
            final byte[] manifest = plan.manifest().encode();
            final String digest = dev.strata.transport.BlockId.of(manifest).hex();
            java.util.List<dev.strata.paramclient.ServiceInfo.Version> versions = java.util.List.of();
            try
            {
                versions = client.versions(name);
            }
            catch (final dev.strata.paramclient.ParamClient.ServiceException e)
            {
                if (e.status() != 404)
                {
                    throw e;
                }
            }
            Integer version = null;
            boolean hasStable = false;
            for (final dev.strata.paramclient.ServiceInfo.Version v : versions)
            {
                hasStable |= v.state().equalsIgnoreCase("ACTIVE");
                if (digest.equals(v.manifest()) && java.util.Set.of("COMMITTED", "ACTIVE", "CANARY")
                    .contains(v.state().toUpperCase(java.util.Locale.ROOT)))
                {
                    version = v.version();
                }
            }
            if (version == null)
            {
                final dev.strata.paramclient.ServiceInfo.UploadBegun begun = client.beginUpload(name, digest);
                final ModelImporter.Result result = ModelImporter.upload(plan, new ModelImporter.BlockSink()
                {
                    @Override
                    public java.util.List<dev.strata.transport.BlockId> missing(
                        final java.util.List<dev.strata.transport.BlockId> ids) throws java.io.IOException
                    {
                        return client.missing(ids);
                    }

                    @Override
                    public void put(final dev.strata.transport.BlockId id, final java.lang.foreign.MemorySegment bytes)
                        throws java.io.IOException
                    {
                        client.putBlock(id, bytes.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
                    }
                }, (a, b, c, d) -> { }, 4);
                client.commit(name, begun.version(), manifest);
                version = begun.version();
                err.printf("imported %s as %s@%d (%s sent)%n", file, name, version, Sizes.format(result.bytesNew()));
            }
            else
            {
                err.printf("%s is already %s@%d: nothing sent%n", file, name, version);
            }
            if (!hasStable)
            {
                client.promote(name, version);
            }
            return name + "@" + version;
        }
    }

    private static boolean isLoopback(final String host)
    {
        try
        {
            return java.net.InetAddress.getByName(host).isLoopbackAddress();
        }
        catch (final java.net.UnknownHostException e)
        {
            throw new IllegalArgumentException("--host " + host + ": unknown host");
        }
    }
}
