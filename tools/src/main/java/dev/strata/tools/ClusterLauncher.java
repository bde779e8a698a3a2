package dev.strata.tools;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.serve.ClusterCatalog;
import dev.strata.serve.ClusterRouter;
import dev.strata.serve.OpenAiServer;
import dev.strata.serve.ServedModel;
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
 * <p>
 * Served by name or label from a parameter service ({@code --model NAME} or {@code NAME:LABEL}), the deployment
 * follows the label: when it names another version (promote, rollback), a second set of nodes starts on that version,
 * the router binds new requests to it once the whole set is in rotation, the old set finishes the requests bound to
 * the old version and is then stopped. No request runs on two versions and none is refused during the change; the
 * machine carries both sets for that while. With {@code --switch replace} the old set finishes its requests and stops
 * first, and the new one starts on the same CPUs and memory while new requests wait.
 */
final class ClusterLauncher
{
    private final ServeCommand cmd;
    private final PrintWriter err;
    /** Every node process started (the supervisor's list; retired ones stay, stopped). */
    private final List<Child> children = new java.util.concurrent.CopyOnWriteArrayList<>();
    private volatile boolean stopping;

    /** One node process and how to start it again. */
    private static final class Child
    {
        final String name;
        final List<String> command;
        final String token;
        volatile Process process;
        int restarts;
        long started;
        int quickFailures;
        long notBefore;
        boolean abandoned;
        /** Stopped on purpose (its version was replaced): not started again. */
        volatile boolean retired;

        Child(final String name, final List<String> command, final String token)
        {
            this.name = name;
            this.command = command;
            this.token = token;
        }
    }

    ClusterLauncher(final ServeCommand cmd, final PrintWriter err)
    {
        this.cmd = cmd;
        this.err = err;
    }

    /** Where the nodes get the weights, and what the router needs of the model. */
    private record Source(String name, String version, Tokenizer tokenizer, ChatTemplate template,
        List<String> nodeArgs, String token, List<AutoCloseable> resources, Follow follow) implements AutoCloseable
    {
        @Override
        public void close() throws Exception
        {
            for (int i = resources.size() - 1; i >= 0; i--)
            {
                resources.get(i).close();
            }
        }
    }

    /**
     * {@code --direct}: every node maps the file. Otherwise the nodes stream the version's weights from the
     * parameter service: the embedded one over {@code --data-dir} (a file is imported first), or
     * {@code --param-server}.
     */
    private Source source() throws Exception
    {
        final List<AutoCloseable> resources = new ArrayList<>();
        try
        {
            if (cmd.direct)
            {
                final Path model = Path.of(cmd.model);
                if (!Files.isRegularFile(model))
                {
                    throw new IllegalArgumentException("--direct serves a GGUF file: " + model + " is not one");
                }
                final GgufFile file = GgufFile.open(model);
                resources.add(file);
                return new Source(cmd.servedName != null ? cmd.servedName : model.getFileName().toString()
                    .replaceFirst("(?i)\\.gguf$", ""), ServeCommand.fileVersion(model),
                    Tokenizer.fromGguf(file.metadata()), ChatTemplate.fromMetadata(file.metadata()),
                    List.of("--model", model.toAbsolutePath().toString()), null, resources, null);
            }
            final String token;
            final String admin;
            if (cmd.paramServer != null)
            {
                token = Tokens.resolve(cmd.token, cmd.tokenFile, "STRATA_TOKEN");
                admin = cmd.paramServer;
            }
            else
            {
                final Path data = cmd.dataDir != null ? cmd.dataDir : Path.of(System.getProperty("user.home"),
                    ".strata", "data");
                Files.createDirectories(data);
                token = cmd.adminToken(data);
                final dev.strata.paramserver.ParamService service = dev.strata.paramserver.ParamService.launch(
                    new dev.strata.paramserver.ParamService.Context().dataDir(data).adminPort(
                        cmd.adminPort != null ? cmd.adminPort : cmd.port == 0 ? 0 : cmd.port + 1).token(token));
                resources.add(service);
                admin = "127.0.0.1:" + service.adminPort();
                err.printf("parameter service: http://%s, data %s%n", admin, data);
            }
            final dev.strata.paramclient.ParamClient client = new dev.strata.paramclient.ParamClient(admin, token);
            final String ref = Files.isRegularFile(Path.of(cmd.model)) ?
                ServeCommand.importFile(client, Path.of(cmd.model), cmd.servedName, err) : cmd.model;
            final ModelCommand.Ref r = ModelCommand.Ref.parse(ref);
            final int number = r.number(client);
            final dev.strata.compute.stream.RemoteModel remote = lease(client, r.model(), number);
            resources.add(remote);
            // a name or a label is followed; a number (or a file, imported as a number) stays
            final Follow follow = r.version().matches("[0-9]+") ? null :
                new Follow(client, admin, r, remote.metadata(), new Follow.Serving(number, versionOf(remote), remote));
            return new Source(r.model(), versionOf(remote), Tokenizer.fromGguf(remote.metadata()),
                ChatTemplate.fromMetadata(remote.metadata()), nodeArgs(admin, r.model(), number), token, resources,
                follow);
        }
        catch (final Exception e)
        {
            for (int i = resources.size() - 1; i >= 0; i--)
            {
                resources.get(i).close();
            }
            throw e;
        }
    }

    /** A lease on a version for as long as this process serves it: the service does not remove a served version. */
    private static dev.strata.compute.stream.RemoteModel lease(final dev.strata.paramclient.ParamClient client,
        final String model, final int number) throws java.io.IOException
    {
        return dev.strata.compute.stream.RemoteModel.open(client, model, String.valueOf(number),
            "router-" + ProcessHandle.current().pid(), 60_000);
    }

    /** The version string the nodes' engines use (as ParamCatalog's): the pinned version and its manifest's digest. */
    private static String versionOf(final dev.strata.compute.stream.RemoteModel remote)
    {
        return remote.pinned() + ":" + dev.strata.transport.BlockId.of(remote.manifest().encode()).hex();
    }

    private static List<String> nodeArgs(final String admin, final String model, final int number)
    {
        return List.of("--param-server", admin, "--model", model + "@" + number);
    }

    /** A label the deployment follows, and what it serves now (read and changed by the follower thread only). */
    private static final class Follow
    {
        record Serving(int number, String version, AutoCloseable lease)
        {
        }

        final dev.strata.paramclient.ParamClient client;
        final String admin;
        final ModelCommand.Ref ref;
        /** The served version's metadata, whose tokenizer every followed version must share. */
        final dev.strata.compute.gguf.GgufMetadata metadata;
        Serving serving;
        /** A version that could not be switched to: not tried again until the label moves on. */
        int refused = -1;
        /** The canary's node set while one runs beside the serving set. */
        CanarySet canary;
        /** A canary whose set could not start: not tried again until the canary label moves on. */
        int refusedCanary = -1;

        /** A canary version's node set and lease (its model and share are the catalog's: {@link ClusterCatalog}). */
        record CanarySet(int number, String version, AutoCloseable lease, List<Child> set)
        {
        }

        Follow(final dev.strata.paramclient.ParamClient client, final String admin, final ModelCommand.Ref ref,
            final dev.strata.compute.gguf.GgufMetadata metadata, final Serving serving)
        {
            this.client = client;
            this.admin = admin;
            this.ref = ref;
            this.metadata = metadata;
            this.serving = serving;
        }
    }

    int run(final String apiKey, final CountDownLatch stop) throws Exception
    {
        if (cmd.prefillNodes < 0 || cmd.decodeNodes < 0 || cmd.bothNodes < 0)
        {
            throw new IllegalArgumentException("node counts must not be negative");
        }
        if (cmd.decodeNodes + cmd.bothNodes == 0)
        {
            throw new IllegalArgumentException("--prefill needs at least one --decode (or --both) node to decode");
        }
        final String routerSpec = routerSpec(cmd.routerCpus);
        final int count = cmd.prefillNodes + cmd.decodeNodes + cmd.bothNodes;
        final int cores = Runtime.getRuntime().availableProcessors();
        final int threads = cmd.nodeThreads != null ? cmd.nodeThreads : Math.max(1, cores / count);
        final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        try (Source source = source();
            // the driver's directory is named for this process, so a later start sweeps it if this one is killed
            Transport transport = Transport.launch(new TransportContext()))
        {
            final String aeronDir = transport.context().aeronDirectory();
            final String name = source.name();
            final String version = source.version();
            final Tokenizer tokenizer = source.tokenizer();
            final ChatTemplate template = source.template();
            try (ClusterRouter router = ClusterRouter.launch(new ClusterRouter.Context().aeron(transport.aeron())
                .tokenizer(tokenizer).version(version).nodeTimeoutMillis(cmd.nodeTimeoutMillis)
                .udpListen(cmd.clusterListen == null ? null : NodeCommand.udp(cmd.clusterListen))
                .autoRatio(cmd.autoRatio, cmd.ratioWindowSeconds * 1000, cmd.ttftTargetMillis, cmd.tpotTargetMillis))
                .bindTo(registry))
            {
                final String[] pins = pins(count, cores);
                final List<Child> first = startNodes(pins, aeronDir, threads, source.nodeArgs(), source.token(), "");
                final String routerCpus = switch (routerSpec)
                {
                    case "auto" -> routerCpus(roles(), pins);
                    case "none" -> null;
                    default -> routerSpec;
                };
                if (routerCpus != null)
                {
                    pinSelf(routerCpus, routerSpec.equals("auto") ? " (the prefill nodes'; decode nodes' CPUs run only " +
                        "their steps)" : " (--router-cpus)");
                }
                err.flush();
                final Thread supervisor = Thread.ofPlatform().daemon().name("strata-node-supervisor")
                    .start(this::supervise);
                router.awaitNodes(count, 180_000);
                final ClusterCatalog catalog = new ClusterCatalog(new ServedModel(name, router, tokenizer, template,
                    System.currentTimeMillis() / 1000), List.of(cmd.model));
                final Thread follower = source.follow() == null ? null : Thread.ofPlatform().daemon()
                    .name("strata-version-follower").start(() -> follow(new NodeSets(source, router, pins, aeronDir,
                        threads), catalog, first));
                try (OpenAiServer server = OpenAiServer.launch(new OpenAiServer.Context().host(cmd.host)
                    .port(cmd.port).apiKey(apiKey).registry(registry).cluster(router).catalog(catalog)))
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
                    if (follower != null)
                    {
                        follower.interrupt();
                        follower.join(10_000);
                    }
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

    /** Starts a node process per role, named {@code ROLE-I} and {@code suffix}, on {@code pins}. */
    private List<Child> startNodes(final String[] pins, final String aeronDir, final int threads,
        final List<String> nodeArgs, final String token, final String suffix)
        throws java.io.IOException, InterruptedException
    {
        final List<Child> set = new ArrayList<>();
        int i = 0;
        for (final String role : roles())
        {
            final String node = role + "-" + (i + 1) + suffix;
            final List<String> command = new ArrayList<>();
            if (pins[i] != null)
            {
                command.addAll(List.of("taskset", "-c", pins[i]));
            }
            command.add(ProcessHandle.current().info().command().orElse("java"));
            for (final String arg : ManagementFactory.getRuntimeMXBean().getInputArguments())
            {
                // a node reaches this process's driver through --aeron-dir: an inherited -Dstrata.aeron.dir (with an
                // embedded driver by default) had each node start its own driver in the router's directory
                if (!arg.startsWith("-agentlib") && !arg.startsWith("-javaagent") &&
                    !arg.startsWith("-D" + TransportContext.AERON_DIR_PROP + "=") &&
                    !arg.startsWith("-D" + TransportContext.EMBEDDED_DRIVER_PROP + "="))
                {
                    command.add(arg);
                }
            }
            command.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "node",
                "--role", role, "--node-id", node, "--router", "aeron:ipc", "--aeron-dir", aeronDir,
                "--threads", Integer.toString(threads),
                cmd.batchInvariant ? "--batch-invariant" : "--no-batch-invariant"));
            command.addAll(cmd.engineOptions.args());
            command.addAll(nodeArgs);
            final Child child = new Child(node, command, token);
            try
            {
                start(child);
            }
            catch (final java.io.IOException e)
            {
                retire(set); // none of a set that did not start runs on
                throw e;
            }
            children.add(child); // started first: the supervisor reads its process
            set.add(child);
            err.printf("node %s: pid %d%s%n", node, child.process.pid(), pins[i] != null ? ", CPUs " + pins[i] : "");
            i++;
        }
        err.flush();
        return set;
    }

    /**
     * Follows the served label: every second, the version it names; when that changes, {@link #switchTo} (or, when it
     * names the running canary, {@link #adoptCanary}). A deployment following the stable label also follows the
     * model's canary ({@link #followCanary}). Runs until interrupted (the deployment stops).
     */
    private void follow(final NodeSets sets, final ClusterCatalog catalog, final List<Child> first)
    {
        final Follow f = sets.source.follow();
        List<Child> serving = first;
        String lastError = null;
        while (!stopping)
        {
            try
            {
                Thread.sleep(FOLLOW_INTERVAL_MILLIS);
                final int number = f.ref.number(f.client);
                lastError = null;
                if (f.canary != null && number == f.canary.number())
                {
                    serving = adoptCanary(sets, catalog, serving);
                }
                else if (number != f.serving.number() && number != f.refused)
                {
                    serving = switchTo(sets, serving, number);
                }
                else if (number == f.serving.number())
                {
                    f.refused = -1;
                }
                if (f.ref.version().equals("stable"))
                {
                    followCanary(sets, catalog);
                }
            }
            catch (final InterruptedException e)
            {
                return;
            }
            catch (final Exception e)
            {
                // the service restarting, or the label read failing: the deployment keeps what it serves (said once
                // per distinct failure, not every second)
                if (!java.util.Objects.equals(lastError, e.getMessage()))
                {
                    lastError = e.getMessage();
                    err.printf("version follower: %s (still serving %s@%d)%n", e.getMessage(), f.ref.model(),
                        f.serving.number());
                    err.flush();
                }
            }
        }
    }

    /** How often the followed label is read. */
    static final long FOLLOW_INTERVAL_MILLIS = 1_000;

    /** How long the old version's requests may run on after a switch before its nodes are stopped anyway. */
    static final long DRAIN_MILLIS = 600_000;

    /** How long a failed replace waits before launching the old version's set again when its processes did not start. */
    static final long RELAUNCH_MILLIS = 5_000;

    /**
     * Moves the deployment to version {@code number}: a lease on it, whose tokenizer and chat template must be the
     * served one's (the HTTP layer tokenizes before the router binds a version), then {@link #overlap} or
     * {@link #replace} as {@code --switch} says. A version whose nodes do not join within {@code --switch-deadline-s}
     * is refused until the label moves on. Returns the node set now serving.
     */
    private List<Child> switchTo(final NodeSets sets, final List<Child> old, final int number) throws Exception
    {
        final Source source = sets.source;
        final Follow f = source.follow();
        final String model = f.ref.model();
        final dev.strata.compute.stream.RemoteModel remote = lease(f.client, model, number);
        if (!sameTokenizer(f.metadata, remote.metadata()))
        {
            remote.close();
            f.refused = number;
            err.printf("%s:%s names %s@%d, not followed: its tokenizer or chat template differs from the served " +
                "one's (restart strata serve to serve it)%n", model, f.ref.version(), model, number);
            err.flush();
            return old;
        }
        try
        {
            return cmd.switchMode == ServeCommand.SwitchMode.replace ? replace(sets, old, number, remote) :
                overlap(sets, old, number, remote);
        }
        finally
        {
            if (f.serving.lease() != remote)
            {
                remote.close(); // refused, or the switch failed or was interrupted
            }
        }
    }

    /**
     * Follows the model's canary while the deployment follows its stable label: a canary version gets a node set of
     * its own beside the serving one and, once that set is in rotation, its share of new requests (sticky per user,
     * {@link ClusterCatalog}); a new weight applies at once; a canary that is no longer one (replaced by another, or
     * taken back) stops taking requests, finishes those it has and stops. A canary that is promoted is
     * {@link #adoptCanary adopted} by the follow loop. {@code --switch replace} deployments, which have no room for
     * a second set, run no canary and say so.
     */
    private void followCanary(final NodeSets sets, final ClusterCatalog catalog) throws Exception
    {
        final Follow f = sets.source.follow();
        final String model = f.ref.model();
        Integer number = null;
        for (final dev.strata.paramclient.ServiceInfo.ModelSummary m : f.client.models())
        {
            if (m.name().equals(model))
            {
                number = m.canary();
            }
        }
        if (f.canary != null && (number == null || number != f.canary.number()))
        {
            endCanary(sets, catalog, number == null ? "no longer a canary" : model + "@" + number + " is the canary now");
        }
        if (number == null || number == f.serving.number())
        {
            f.refusedCanary = -1;
            return;
        }
        if (number == f.refusedCanary)
        {
            return;
        }
        final Integer w = f.client.show(model, Integer.toString(number)).canaryWeight();
        final int weight = w == null ? 0 : w;
        if (weight < 1)
        {
            return;
        }
        if (cmd.switchMode == ServeCommand.SwitchMode.replace)
        {
            f.refusedCanary = number;
            err.printf("%s@%d is a canary (%d%%): not run, a --switch replace deployment has no room for a second " +
                "node set; every request stays on %s@%d%n", model, number, weight, model, f.serving.number());
            err.flush();
            return;
        }
        if (f.canary == null)
        {
            startCanary(sets, catalog, number, weight);
        }
        else
        {
            final ClusterCatalog.Canary running = catalog.canary();
            if (weight != running.weightPercent())
            {
                catalog.canary(running.model(), number, weight);
                err.printf("canary %s@%d: %d%% of new requests (was %d%%)%n", model, number, weight,
                    running.weightPercent());
                err.flush();
            }
        }
    }

    /** Starts the canary's node set; once the whole set is in rotation, it takes its share of new requests. */
    private void startCanary(final NodeSets sets, final ClusterCatalog catalog, final int number, final int weight)
        throws Exception
    {
        final Follow f = sets.source.follow();
        final String model = f.ref.model();
        final dev.strata.compute.stream.RemoteModel remote = lease(f.client, model, number);
        boolean kept = false;
        try
        {
            if (!sameTokenizer(f.metadata, remote.metadata()))
            {
                f.refusedCanary = number;
                err.printf("canary %s@%d not run: its tokenizer or chat template differs from the served one's%n",
                    model, number);
                err.flush();
                return;
            }
            err.printf("canary %s@%d (%d%%): starting its nodes beside %s@%d's%n", model, number, weight, model,
                f.serving.number());
            err.flush();
            final String version = versionOf(remote);
            final List<Child> set;
            try
            {
                set = startSet(sets, number);
            }
            catch (final java.io.IOException e)
            {
                f.refusedCanary = number;
                err.printf("canary %s@%d: its nodes did not start (%s)%n", model, number, e.getMessage());
                err.flush();
                return;
            }
            if (!joined(sets.router, set, version))
            {
                f.refusedCanary = number;
                err.printf("canary %s@%d: its nodes did not join within %d s; every request stays on %s@%d%n", model,
                    number, cmd.switchDeadlineSeconds, model, f.serving.number());
                err.flush();
                return;
            }
            synchronized (sets.source.resources())
            {
                sets.source.resources().add(remote);
            }
            kept = true;
            final ServedModel served = new ServedModel(model + "@" + number, sets.router.bound(version),
                sets.source.tokenizer(), sets.source.template(), System.currentTimeMillis() / 1000);
            catalog.canary(served, number, weight);
            f.canary = new Follow.CanarySet(number, version, remote, set);
            err.printf("canary %s@%d: %d%% of new requests (sticky per user) run on its nodes%n", model, number,
                weight);
            err.flush();
        }
        finally
        {
            if (!kept)
            {
                remote.close();
            }
        }
    }

    /** The canary takes no new request; its requests finish on its nodes, which then stop, and its lease goes. */
    private void endCanary(final NodeSets sets, final ClusterCatalog catalog, final String why) throws Exception
    {
        final Follow f = sets.source.follow();
        final Follow.CanarySet c = f.canary;
        final ClusterCatalog.Canary ended = catalog.endCanary();
        err.printf("canary %s@%d: %s; it takes no new request and stops once its requests have finished%n",
            f.ref.model(), c.number(), why);
        err.flush();
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DRAIN_MILLIS);
        while (ended != null && ended.inFlight().get() > 0 && System.nanoTime() - deadline < 0)
        {
            Thread.sleep(100);
        }
        final int left = drain(sets.router, c.version());
        stopSet(sets.router, c.set());
        release(sets.source, c.lease());
        f.canary = null;
        err.printf("canary %s@%d: nodes stopped%s%n", f.ref.model(), c.number(), leftOn(left));
        err.flush();
    }

    /**
     * The canary was promoted: its set, in rotation already, takes every new request, and the old stable set
     * finishes its requests and stops. No node starts.
     */
    private List<Child> adoptCanary(final NodeSets sets, final ClusterCatalog catalog, final List<Child> old)
        throws Exception
    {
        final Follow f = sets.source.follow();
        final Follow.CanarySet c = f.canary;
        final String model = f.ref.model();
        final Follow.Serving before = f.serving;
        sets.router.switchVersion(c.version()).get(10, TimeUnit.SECONDS);
        catalog.endCanary(); // the name's requests go to the router's current version: the canary's now
        f.serving = new Follow.Serving(c.number(), c.version(), c.lease()); // its lease is among the resources
        f.canary = null;
        err.printf("serving %s@%d (the canary, promoted): new requests run on its nodes; %s@%d finishes its " +
            "requests%n", model, c.number(), model, before.number());
        err.flush();
        retireVersion(sets, old, before);
        return c.set();
    }

    /** What starting and stopping a node set needs. */
    private record NodeSets(Source source, ClusterRouter router, String[] pins, String aeronDir, int threads)
    {
    }

    /**
     * The new version's node set starts beside the serving one; new requests are bound to it once the whole set is
     * in rotation; the old set stops when the old version's requests have finished. No pause, but the machine carries
     * both sets for a while.
     */
    private List<Child> overlap(final NodeSets sets, final List<Child> old, final int number,
        final dev.strata.compute.stream.RemoteModel remote) throws Exception
    {
        final Follow f = sets.source.follow();
        final String model = f.ref.model();
        final String version = versionOf(remote);
        err.printf("%s:%s names %s@%d (serving %s@%d): starting its nodes beside the serving ones%n", model,
            f.ref.version(), model, number, model, f.serving.number());
        err.flush();
        final List<Child> set = startSet(sets, number);
        if (!joined(sets.router, set, version))
        {
            f.refused = number;
            err.printf("%s@%d: its nodes did not join within %d s; still serving %s@%d%n", model, number,
                cmd.switchDeadlineSeconds, model, f.serving.number());
            err.flush();
            return old;
        }
        final Follow.Serving before = f.serving;
        sets.router.switchVersion(version).get(10, TimeUnit.SECONDS);
        serve(sets.source, number, version, remote);
        err.printf("serving %s@%d: new requests run on it; %s@%d finishes its requests%n", model, number, model,
            before.number());
        err.flush();
        retireVersion(sets, old, before);
        return set;
    }

    /**
     * The serving set finishes the old version's requests and stops; then the new version's set starts on the same
     * CPUs and memory. New requests are bound to the new version at once and wait in the router until its nodes are
     * in rotation: a pause of the drain plus the new nodes' start, for machines without room for two sets. When the
     * new set does not join, a set of the old version starts again and the waiting requests run on it.
     */
    private List<Child> replace(final NodeSets sets, final List<Child> old, final int number,
        final dev.strata.compute.stream.RemoteModel remote) throws Exception
    {
        final Follow f = sets.source.follow();
        final String model = f.ref.model();
        final String version = versionOf(remote);
        final Follow.Serving before = f.serving;
        err.printf("%s:%s names %s@%d (serving %s@%d): new requests wait for its nodes, which start once %s@%d's " +
            "requests have finished and its nodes stopped (--switch replace)%n", model, f.ref.version(), model, number,
            model, before.number(), model, before.number());
        err.flush();
        sets.router.switchVersion(version).get(10, TimeUnit.SECONDS);
        final int left = drain(sets.router, before.version());
        stopSet(sets.router, old);
        err.printf("%s@%d: nodes stopped%s; starting %s@%d's%n", model, before.number(), leftOn(left), model,
            number);
        err.flush();
        List<Child> set = null;
        try
        {
            set = startSet(sets, number);
        }
        catch (final java.io.IOException e)
        {
            // the old set is gone: whatever failed, its version comes back below
            err.printf("%s@%d: its nodes did not start (%s)%n", model, number, e.getMessage());
            err.flush();
        }
        if (set != null && joined(sets.router, set, version))
        {
            serve(sets.source, number, version, remote);
            release(sets.source, before.lease());
            err.printf("serving %s@%d%n", model, number);
            err.flush();
            return set;
        }
        f.refused = number;
        err.printf("%s@%d: its nodes did not %s; starting %s@%d's again%n", model, number, set == null ? "start" :
            "join within " + cmd.switchDeadlineSeconds + " s", model, before.number());
        err.flush();
        sets.router.switchVersion(before.version()).get(10, TimeUnit.SECONDS);
        // nothing else to serve: the waiting requests wait for these nodes however long they take. A set that cannot
        // be launched (the process start fails) is tried again; the supervisor starts a node that exits again.
        List<Child> back = null;
        while (back == null)
        {
            try
            {
                back = startSet(sets, before.number());
            }
            catch (final java.io.IOException e)
            {
                err.printf("%s@%d: its nodes did not start (%s); trying again in %d s%n", model, before.number(),
                    e.getMessage(), RELAUNCH_MILLIS / 1000);
                err.flush();
                Thread.sleep(RELAUNCH_MILLIS);
            }
        }
        while (true)
        {
            try
            {
                sets.router.awaitNodes(back.size(), before.version(), TimeUnit.SECONDS.toMillis(
                    cmd.switchDeadlineSeconds));
                break;
            }
            catch (final IllegalStateException e)
            {
                err.printf("%s@%d: still waiting for its nodes (%s)%n", model, before.number(), e.getMessage());
                err.flush();
            }
        }
        err.printf("serving %s@%d again%n", model, before.number());
        err.flush();
        return back;
    }

    /** The old version's requests finish (at most {@link #DRAIN_MILLIS}), then its set stops and its lease goes. */
    private void retireVersion(final NodeSets sets, final List<Child> set, final Follow.Serving old) throws Exception
    {
        final int left = drain(sets.router, old.version());
        stopSet(sets.router, set);
        release(sets.source, old.lease());
        err.printf("%s@%d: nodes stopped%s%n", sets.source.follow().ref.model(), old.number(), leftOn(left));
        err.flush();
    }

    /** How a drain ended, for the log. */
    private static String leftOn(final int left)
    {
        return left == 0 ? " (no request left on it)" : " with " + left + " requests still on it after " +
            DRAIN_MILLIS / 1000 + " s: they end with an error";
    }

    /** Starts a node set of version {@code number} of the followed model. */
    private List<Child> startSet(final NodeSets sets, final int number)
        throws java.io.IOException, InterruptedException
    {
        final Follow f = sets.source.follow();
        return startNodes(sets.pins, sets.aeronDir, sets.threads, nodeArgs(f.admin, f.ref.model(), number),
            sets.source.token(), "-v" + number);
    }

    /** Whether the whole set joined rotation within the switch deadline; if not, it is stopped. */
    private boolean joined(final ClusterRouter router, final List<Child> set, final String version)
        throws InterruptedException
    {
        try
        {
            router.awaitNodes(set.size(), version, TimeUnit.SECONDS.toMillis(cmd.switchDeadlineSeconds));
            return true;
        }
        catch (final IllegalStateException e)
        {
            retire(set);
            return false;
        }
        catch (final InterruptedException e)
        {
            retire(set);
            throw e; // the deployment stops
        }
    }

    /** Version {@code number} is the one served: its lease is kept until it is replaced or the deployment stops. */
    private static void serve(final Source source, final int number, final String version,
        final dev.strata.compute.stream.RemoteModel remote)
    {
        source.follow().serving = new Follow.Serving(number, version, remote);
        synchronized (source.resources())
        {
            source.resources().add(remote);
        }
    }

    /** Lets go of a version no longer served. */
    private static void release(final Source source, final AutoCloseable lease) throws Exception
    {
        synchronized (source.resources())
        {
            source.resources().remove(lease);
        }
        lease.close();
    }

    /**
     * Waits until no request bound to {@code version} runs (at most {@link #DRAIN_MILLIS}); returns how many still
     * do.
     */
    private static int drain(final ClusterRouter router, final String version) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DRAIN_MILLIS);
        while (router.view().activeByVersion().getOrDefault(version, 0) > 0 && System.nanoTime() - deadline < 0)
        {
            Thread.sleep(100);
        }
        return router.view().activeByVersion().getOrDefault(version, 0);
    }

    /** Stops a node set for good and drops its nodes from the router's list. */
    private void stopSet(final ClusterRouter router, final List<Child> set) throws Exception
    {
        retire(set);
        for (final Child c : set)
        {
            // out of rotation once its process is gone (checked every 50 ms): then off the router's list
            final long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (!router.forget(c.name).get(10, TimeUnit.SECONDS) && System.nanoTime() - until < 0)
            {
                Thread.sleep(50);
            }
        }
    }

    /**
     * Whether two versions' metadata give the same tokenizer and chat template (every {@code tokenizer.*} entry
     * equal), so that a prompt tokenized for one is the same prompt for the other.
     */
    static boolean sameTokenizer(final dev.strata.compute.gguf.GgufMetadata a,
        final dev.strata.compute.gguf.GgufMetadata b)
    {
        final java.util.function.Function<dev.strata.compute.gguf.GgufMetadata, java.util.Set<String>> keys = m ->
            m.keys().stream().filter(k -> k.startsWith("tokenizer.")).collect(java.util.stream.Collectors.toSet());
        return keys.apply(a).equals(keys.apply(b)) &&
            keys.apply(a).stream().allMatch(k -> java.util.Objects.deepEquals(a.get(k), b.get(k)));
    }

    /** Stops a node set for good: the supervisor does not start it again. */
    private void retire(final List<Child> set) throws InterruptedException
    {
        for (final Child c : set)
        {
            c.retired = true;
            c.process.destroy();
        }
        for (final Child c : set)
        {
            if (!c.process.waitFor(10, TimeUnit.SECONDS))
            {
                c.process.destroyForcibly();
            }
        }
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

    /**
     * The CPUs of this process (router, HTTP server, media driver) in a split deployment whose nodes are all pinned:
     * the prefill nodes' CPUs, so that its work (requests, tokenizing, relaying tokens, the driver) never preempts a
     * decode step, whose time is every running request's TPOT; a prefill absorbs it in its TTFT. Null otherwise.
     */
    static String routerCpus(final List<String> roles, final String[] pins)
    {
        final List<String> prefill = new ArrayList<>();
        boolean decode = false;
        for (int i = 0; i < roles.size(); i++)
        {
            if (pins[i] == null)
            {
                return null;
            }
            if (roles.get(i).equals("prefill"))
            {
                prefill.add(pins[i]);
            }
            else
            {
                decode = true;
            }
        }
        return prefill.isEmpty() || !decode ? null : String.join(",", prefill);
    }

    /** {@code --router-cpus} checked: auto, none or a CPU list. */
    static String routerSpec(final String option)
    {
        final String spec = option.trim().toLowerCase(Locale.ROOT);
        if (!spec.equals("auto") && !spec.equals("none") && !spec.matches("[0-9][0-9,\\-]*"))
        {
            throw new IllegalArgumentException("--router-cpus: '" + option + "' is not auto, none or a CPU list like " +
                "0 or 0-1,3");
        }
        return spec;
    }

    /** Pins every thread of this process (and so the threads it starts later) to {@code cpus}, with taskset. */
    private void pinSelf(final String cpus, final String why)
    {
        final long pid = ProcessHandle.current().pid();
        try
        {
            final Process p = new ProcessBuilder("taskset", "-a", "-p", "-c", cpus, Long.toString(pid))
                .redirectErrorStream(true).start();
            final String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            if (p.waitFor() == 0)
            {
                err.printf("router: pid %d, CPUs %s%s%n", pid, cpus, why);
            }
            else
            {
                err.printf("router: not pinned to CPUs %s: %s%n", cpus, out.strip());
            }
        }
        catch (final java.io.IOException e)
        {
            err.printf("router: not pinned to CPUs %s: %s%n", cpus, e.getMessage());
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
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
        final ProcessBuilder pb = new ProcessBuilder(child.command).inheritIO();
        if (child.token != null)
        {
            pb.environment().put("STRATA_TOKEN", child.token); // not on the command line: ps shows that
        }
        child.process = pb.start();
        child.started = System.nanoTime();
    }

    /** Starts a node again when its process ends while serving. */
    private void supervise()
    {
        while (!stopping)
        {
            for (final Child c : children)
            {
                final Process p = c.process;
                if (!p.isAlive() && !stopping && !c.abandoned && !c.retired)
                {
                    final long now = System.nanoTime();
                    if (c.notBefore == 0)
                    {
                        // exited within 10 s of its start: back off 1, 2, 4, 8 s, and give up after 5 in a row
                        c.quickFailures = now - c.started < TimeUnit.SECONDS.toNanos(10) ? c.quickFailures + 1 : 0;
                        if (c.quickFailures >= 5)
                        {
                            c.abandoned = true;
                            err.printf("node %s exited %d times right after starting (last exit %d): not starting " +
                                "it again; see its output above%n", c.name, c.quickFailures, p.exitValue());
                            err.flush();
                            continue;
                        }
                        c.notBefore = now + TimeUnit.SECONDS.toNanos(c.quickFailures == 0 ? 0 :
                            1L << (c.quickFailures - 1));
                    }
                    if (now - c.notBefore < 0)
                    {
                        continue;
                    }
                    c.notBefore = 0;
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
