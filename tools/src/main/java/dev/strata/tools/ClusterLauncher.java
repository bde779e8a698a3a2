package dev.strata.tools;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.serve.ClusterRouter;
import dev.strata.serve.OpenAiServer;
import dev.strata.serve.ServedModel;
import dev.strata.serve.SingleModelCatalog;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

import java.io.File;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * {@code strata serve --prefill N --decode M [--both K]}: the split deployment on one machine. This process runs the
 * media driver, the router and the HTTP API; each node is a {@code strata node} child process (the same JVM flags
 * and class path as this one), pinned to its CPUs with {@code taskset} where the machine has enough, reaching the
 * router and the other nodes over Aeron IPC through this process's driver. A node that exits is started again and
 * rejoins; its requests have moved to the others meanwhile.
 */
final class ClusterLauncher
{
    private final ServeCommand cmd;
    private final PrintWriter err;
    private final List<Child> children = new ArrayList<>();
    private volatile boolean stopping;

    /** One node process and how to start it again. */
    private static final class Child
    {
        final String name;
        final List<String> command;
        volatile Process process;
        int restarts;

        Child(final String name, final List<String> command)
        {
            this.name = name;
            this.command = command;
        }
    }

    ClusterLauncher(final ServeCommand cmd, final PrintWriter err)
    {
        this.cmd = cmd;
        this.err = err;
    }

    int run(final String apiKey, final CountDownLatch stop) throws Exception
    {
        final Path model = Path.of(cmd.model);
        if (!Files.isRegularFile(model))
        {
            throw new IllegalArgumentException("--prefill/--decode/--both serve a GGUF file: " + model +
                " is not one (nodes map the file; a model of the parameter service is not supported here yet)");
        }
        if (cmd.prefillNodes < 0 || cmd.decodeNodes < 0 || cmd.bothNodes < 0)
        {
            throw new IllegalArgumentException("node counts must not be negative");
        }
        if (cmd.decodeNodes + cmd.bothNodes == 0)
        {
            throw new IllegalArgumentException("--prefill needs at least one --decode (or --both) node to decode");
        }
        final int count = cmd.prefillNodes + cmd.decodeNodes + cmd.bothNodes;
        final int cores = Runtime.getRuntime().availableProcessors();
        final int threads = cmd.nodeThreads != null ? cmd.nodeThreads : Math.max(1, cores / count);
        final String name = cmd.servedName != null ? cmd.servedName : model.getFileName().toString()
            .replaceFirst("(?i)\\.gguf$", "");
        final String version = ServeCommand.fileVersion(model);
        final String aeronDir = (Files.isDirectory(Path.of("/dev/shm")) ? "/dev/shm" :
            System.getProperty("java.io.tmpdir")) + File.separator + "strata-serve-" + ProcessHandle.current().pid();
        final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        try (Transport transport = Transport.launch(new TransportContext().aeronDirectory(aeronDir));
            GgufFile file = GgufFile.open(model))
        {
            final Tokenizer tokenizer = Tokenizer.fromGguf(file.metadata());
            final ChatTemplate template = ChatTemplate.fromMetadata(file.metadata());
            try (ClusterRouter router = ClusterRouter.launch(new ClusterRouter.Context().aeron(transport.aeron())
                .tokenizer(tokenizer).version(version).nodeTimeoutMillis(cmd.nodeTimeoutMillis)).bindTo(registry))
            {
                final String[] pins = pins(count, cores);
                int i = 0;
                for (final String role : roles())
                {
                    final String node = role + "-" + (i + 1);
                    final List<String> command = new ArrayList<>();
                    if (pins[i] != null)
                    {
                        command.addAll(List.of("taskset", "-c", pins[i]));
                    }
                    command.add(ProcessHandle.current().info().command().orElse("java"));
                    for (final String arg : ManagementFactory.getRuntimeMXBean().getInputArguments())
                    {
                        if (!arg.startsWith("-agentlib") && !arg.startsWith("-javaagent"))
                        {
                            command.add(arg);
                        }
                    }
                    command.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "node",
                        "--role", role, "--node-id", node, "--router", "aeron:ipc", "--aeron-dir", aeronDir,
                        "--model", model.toAbsolutePath().toString(), "--threads", Integer.toString(threads),
                        "--kv-memory", cmd.kvMemory, "--kv-type", cmd.kvType, "--max-batch",
                        Integer.toString(cmd.maxBatch), "--max-prefill-tokens", Integer.toString(cmd.maxPrefillTokens),
                        "--context", Integer.toString(cmd.context),
                        cmd.batchInvariant ? "--batch-invariant" : "--no-batch-invariant"));
                    final Child child = new Child(node, command);
                    children.add(child);
                    start(child);
                    err.printf("node %s: pid %d%s%n", node, child.process.pid(), pins[i] != null ? ", CPUs " +
                        pins[i] : "");
                    i++;
                }
                err.flush();
                final Thread supervisor = Thread.ofPlatform().daemon().name("strata-node-supervisor")
                    .start(this::supervise);
                router.awaitNodes(count, 180_000);
                try (OpenAiServer server = OpenAiServer.launch(new OpenAiServer.Context().host(cmd.host)
                    .port(cmd.port).apiKey(apiKey).registry(registry).cluster(router)
                    .catalog(new SingleModelCatalog(new ServedModel(name, router, tokenizer, template,
                        System.currentTimeMillis() / 1000), List.of(model.getFileName().toString())))))
                {
                    err.printf("serving %s at http://%s:%d/v1 with %d prefill, %d decode, %d both node processes " +
                        "(%d threads each); strata nodes --router http://%s:%d lists them%n", name, cmd.host,
                        server.port(), cmd.prefillNodes, cmd.decodeNodes, cmd.bothNodes, threads, cmd.host,
                        server.port());
                    err.flush();
                    stop.await();
                    err.println("stopping");
                    err.flush();
                }
                finally
                {
                    stopping = true;
                    supervisor.interrupt();
                    stopChildren();
                }
            }
        }
        finally
        {
            stopping = true;
            stopChildren();
        }
        return 0;
    }

    private List<String> roles()
    {
        final List<String> roles = new ArrayList<>();
        for (int i = 0; i < cmd.prefillNodes; i++)
        {
            roles.add("prefill");
        }
        for (int i = 0; i < cmd.decodeNodes; i++)
        {
            roles.add("decode");
        }
        for (int i = 0; i < cmd.bothNodes; i++)
        {
            roles.add("both");
        }
        return roles;
    }

    /** CPU lists per node for taskset, or nulls. */
    private String[] pins(final int count, final int cores)
    {
        final String[] pins = new String[count];
        final String spec = cmd.cpus.trim().toLowerCase(Locale.ROOT);
        if (spec.equals("none") || !onPath("taskset"))
        {
            return pins;
        }
        if (spec.equals("auto"))
        {
            if (count > 1 && count <= cores)
            {
                final int per = cores / count;
                for (int i = 0; i < count; i++)
                {
                    pins[i] = per == 1 ? Integer.toString(i) : (i * per) + "-" + (i * per + per - 1);
                }
            }
            return pins;
        }
        final String[] lists = spec.split("/");
        if (lists.length != count)
        {
            throw new IllegalArgumentException("--cpus " + cmd.cpus + " gives " + lists.length + " CPU lists for " +
                count + " nodes");
        }
        for (int i = 0; i < count; i++)
        {
            if (!lists[i].matches("[0-9,\\-]+"))
            {
                throw new IllegalArgumentException("--cpus: '" + lists[i] + "' is not a CPU list like 0 or 0-1,3");
            }
            pins[i] = lists[i];
        }
        return pins;
    }

    private static boolean onPath(final String program)
    {
        for (final String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
        {
            if (Files.isExecutable(Path.of(dir, program)))
            {
                return true;
            }
        }
        return false;
    }

    private void start(final Child child) throws java.io.IOException
    {
        child.process = new ProcessBuilder(child.command).inheritIO().start();
    }

    /** Starts a node again when its process ends while serving. */
    private void supervise()
    {
        while (!stopping)
        {
            for (final Child c : children)
            {
                final Process p = c.process;
                if (!p.isAlive() && !stopping)
                {
                    c.restarts++;
                    err.printf("node %s (pid %d) exited with %d: starting it again (restart %d)%n", c.name, p.pid(),
                        p.exitValue(), c.restarts);
                    err.flush();
                    try
                    {
                        start(c);
                        err.printf("node %s: pid %d%n", c.name, c.process.pid());
                        err.flush();
                    }
                    catch (final java.io.IOException e)
                    {
                        err.println("node " + c.name + " could not be started: " + e.getMessage());
                    }
                }
            }
            try
            {
                Thread.sleep(200);
            }
            catch (final InterruptedException e)
            {
                return;
            }
        }
    }

    private void stopChildren()
    {
        for (final Child c : children)
        {
            if (c.process != null)
            {
                c.process.destroy(); // SIGTERM: the node closes its engine and agent
            }
        }
        for (final Child c : children)
        {
            try
            {
                if (c.process != null && !c.process.waitFor(10, TimeUnit.SECONDS))
                {
                    c.process.destroyForcibly();
                }
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
                c.process.destroyForcibly();
            }
        }
    }
}
