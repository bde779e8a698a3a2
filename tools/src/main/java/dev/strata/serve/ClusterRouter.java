package dev.strata.serve;

import dev.strata.compute.cluster.Msg;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.engine.FinishReason;
import dev.strata.compute.engine.GenerationListener;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.engine.GenerationService;
import dev.strata.compute.engine.RequestHandle;
import dev.strata.compute.engine.TextStream;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.compute.tokenizer.Tokenizer;
import io.aeron.Aeron;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import org.agrona.CloseHelper;
import org.agrona.collections.IntArrayList;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntPredicate;
import java.util.logging.Logger;

/**
 * The router of a split deployment: a {@link GenerationService} over compute nodes in other processes, reached over
 * Aeron. Nodes register and report load with heartbeats ({@link Msg.Heartbeat}); one missing them for
 * {@code nodeTimeoutMillis} is taken out of rotation.
 * <ul>
 * <li>A request goes as prefill to the prefill node with the shortest queue (in tokens), which hands its KV to the
 * decode node with the most free KV blocks; a prompt shorter than {@code splitMinPrompt}, or a deployment without
 * prefill nodes, runs whole on a decode (or {@code both}) node.</li>
 * <li>The router keeps each request's generated tokens and assembles its text ({@link TextStream}: stop strings are
 * applied here), so when a node dies its requests are run again elsewhere from the prompt plus the tokens already
 * sent, and the client's stream goes on with no gap and no repeated text.</li>
 * <li>Each request is bound to a model version when it arrives (the router's current one) and both its halves run on
 * nodes of that version, also when it moves; a node of another version refuses it. Nodes of several versions can be
 * in rotation at once: {@link #switchVersion} makes another version current, the requests already bound finish on
 * theirs, so a deployment can change version with no request mixing two.</li>
 * </ul>
 * One thread owns all state; submit and cancel hand it commands.
 */
public final class ClusterRouter implements GenerationService, AutoCloseable
{
    private static final Logger LOG = Logger.getLogger(ClusterRouter.class.getName());

    /** Settings of a router. */
    public static final class Context
    {
        private Aeron aeron;
        private String channel = "aeron:ipc";
        private int stream = NodeAgent.ROUTER_STREAM;
        private String udpListen;
        private Tokenizer tokenizer;
        private IntPredicate endOfGeneration;
        private String version;
        private long nodeTimeoutMillis = 2_000;
        private int splitMinPrompt = 16;
        private int maxMoves = 3;
        private boolean autoRatio;
        private long ratioWindowMillis = 10_000;
        private long ttftTargetMillis = 2_000;
        private long tpotTargetMillis = 200;

        public Context aeron(final Aeron aeron)
        {
            this.aeron = aeron;
            return this;
        }

        /** Where nodes reach the router. */
        public Context listen(final String channel, final int stream)
        {
            this.channel = channel;
            this.stream = stream;
            return this;
        }

        /** Also listen on a UDP channel, for nodes on other hosts ({@code aeron:udp?endpoint=HOST:PORT}). */
        public Context udpListen(final String channel)
        {
            this.udpListen = channel;
            return this;
        }

        public Context tokenizer(final Tokenizer tokenizer)
        {
            this.tokenizer = tokenizer;
            return this;
        }

        /** The model version requests are bound to at first (see {@link #switchVersion}). */
        public Context version(final String version)
        {
            this.version = version;
            return this;
        }

        public Context nodeTimeoutMillis(final long ms)
        {
            this.nodeTimeoutMillis = ms;
            return this;
        }

        /** Prompts shorter than this run whole on a decode node (a transfer costs more than it saves). */
        public Context splitMinPrompt(final int tokens)
        {
            this.splitMinPrompt = tokens;
            return this;
        }

        /**
         * Follow the load: when one pool stays the bottleneck for a whole window (prefill: the time from dispatch to
         * the KV at the decode node above {@code ttftTargetMillis} while decode keeps under half its target;
         * decode: time per output token above {@code tpotTargetMillis} while prefill keeps under half its target),
         * the least busy node of the other pool switches role (never the last of a pool).
         */
        public Context autoRatio(final boolean on, final long windowMillis, final long ttftTargetMillis,
            final long tpotTargetMillis)
        {
            this.autoRatio = on;
            this.ratioWindowMillis = windowMillis;
            this.ttftTargetMillis = ttftTargetMillis;
            this.tpotTargetMillis = tpotTargetMillis;
            return this;
        }

        Context conclude()
        {
            Objects.requireNonNull(aeron, "aeron");
            if (autoRatio && (ratioWindowMillis <= 0 || ttftTargetMillis <= 0 || tpotTargetMillis <= 0))
            {
                throw new IllegalArgumentException("auto ratio needs a positive window and targets");
            }
            Objects.requireNonNull(tokenizer, "tokenizer");
            Objects.requireNonNull(version, "version");
            if (endOfGeneration == null)
            {
                endOfGeneration = tokenizer::isEndOfGeneration;
            }
            if (nodeTimeoutMillis <= 0 || splitMinPrompt < 2)
            {
                throw new IllegalArgumentException("invalid nodeTimeoutMillis=" + nodeTimeoutMillis +
                    " splitMinPrompt=" + splitMinPrompt + " (at least 2)");
            }
            return this;
        }
    }

    /** A node as the router sees it, for {@code /v1/nodes} and {@code strata nodes}. */
    public record NodeView(String node, String role, String version, long pid, String channel, boolean alive,
        long queueTokens,
        int running, int waiting, int kvBlocks, int kvFree, long kvBytesSent, long kvBytesReceived, long kvTransfers,
        long kvRetries, double kvSendGBps, long requests, long lastSeenMillisAgo)
    {
    }

    /**
     * The router's own counters. {@code kvTransferMillis} and {@code kvGBps} cover KV transfers from their first
     * byte to the decode node's acknowledgement (overlapped with the prefill: a prefill node sends each layer as it
     * lands); {@code kvExposedMillis} is the part after the prefill ended, what transfers added to time to first token.
     */
    public record RouterView(String version, long requests, long split, long whole, long failovers, long retries,
        long roleSwitches, long kvBytes, long kvTransferMillis, double kvGBps, long kvExposedMillis,
        double prefillDelayMillis, double tpotMillis, int active, int pending, Map<String, Integer> activeByVersion,
        List<NodeView> nodes)
    {
    }

    private static final class Node
    {
        Msg.Heartbeat hb;
        Msg.Role role;
        long seen;
        boolean alive;
        Publication pub;
        /** Prompt tokens sent to it since its last heartbeat (its queue as the router knows it before it reports). */
        long assignedTokens;
        int assignedBlocks;
        /** The first blocks of prompts sent to it lately (their chain hash): its prefix cache likely holds them. */
        final java.util.LinkedHashSet<Long> recentPrefixes = new java.util.LinkedHashSet<>();
        /** Requests moved away while it was silent: cancelled on it if it comes back. */
        final List<Long> abandoned = new ArrayList<>();

        /** A node on this host whose process is gone: dead at once, whatever its last heartbeat. */
        boolean processGone()
        {
            return NodeAgent.HOST.equals(hb.host()) && ProcessHandle.of(hb.pid()).map(p -> !p.isAlive()).orElse(true);
        }

        /** A node on this host whose process still runs: silence is load (GC, JIT, a busy core), not death. */
        boolean processAlive()
        {
            return NodeAgent.HOST.equals(hb.host()) && ProcessHandle.of(hb.pid()).map(ProcessHandle::isAlive)
                .orElse(false);
        }
    }

    private final class Req implements RequestHandle
    {
        final long id;
        final GenerationRequest request;
        final GenerationListener listener;
        final TextStream text;
        final IntArrayList generated = new IntArrayList();
        final CompletableFuture<Completion> done = new CompletableFuture<>();
        final long submitted = System.nanoTime();
        long firstToken;
        long firstDispatched;
        long dispatched;
        long lastToken;
        long wire;
        String prefillNode;
        String decodeNode;
        int moves;
        int cachedTokens;
        boolean finished;
        /** Its last token arrived (length or a stop token): it ends with the node's Done, which carries its counts. */
        FinishReason ending;
        /** The model version both its halves run on, bound when it arrives (or, not yet started, at a switch). */
        String version;

        Req(final long id, final GenerationRequest request, final GenerationListener listener)
        {
            this.id = id;
            this.request = request;
            this.listener = listener;
            this.text = new TextStream(ctx.tokenizer, request.stopStrings());
        }

        @Override
        public long id()
        {
            return id;
        }

        @Override
        public CompletableFuture<Completion> completion()
        {
            return done;
        }

        @Override
        public void cancel()
        {
            commands.add(() ->
            {
                if (!finished)
                {
                    cancelOnNodes(this);
                    finish(this, FinishReason.CANCELLED, null);
                }
            });
        }
    }

    private final Context ctx;
    private final Subscription inbound;
    private final Subscription udpInbound;
    private final Map<String, Node> nodes = new LinkedHashMap<>();
    private final Map<Long, Req> byWire = new HashMap<>();
    private final List<Req> active = new ArrayList<>();
    private final ArrayDeque<Req> pending = new ArrayDeque<>();
    private final ConcurrentLinkedQueue<Runnable> commands = new ConcurrentLinkedQueue<>();
    private final AtomicLong ids = new AtomicLong();
    private final Thread thread;
    private long nextWire = 1;
    /** The version new requests are bound to (router thread). */
    private String current;
    private volatile boolean closed;
    private volatile RouterView view;
    private volatile int maxContext;
    private volatile int vocabSize;
    private long requests;
    private long split;
    private long whole;
    private long failovers;
    private long retries;
    private long roleSwitches;
    private long kvBytes;
    private long kvNanos;
    private long kvExposedNanos;
    private MeterRegistry registry;
    private long tpotNanos;
    private long tpotCount;
    private long prefillDelayNanos;
    private long prefillCount;
    private long nextRatioCheck;
    private long bottleneckSince;
    private int bottleneck;
    private volatile double lastTpotMillis;
    private volatile double lastPrefillDelayMillis;
    private Counter transferBytesCounter;

    private ClusterRouter(final Context ctx)
    {
        this.ctx = ctx;
        this.current = ctx.version;
        this.inbound = ctx.aeron.addSubscription(ctx.channel, ctx.stream);
        this.udpInbound = ctx.udpListen == null ? null : ctx.aeron.addSubscription(ctx.udpListen, ctx.stream);
        this.view = snapshot();
        this.thread = Thread.ofPlatform().name("strata-router").daemon().unstarted(this::run);
        thread.start();
    }

    public static ClusterRouter launch(final Context ctx)
    {
        return new ClusterRouter(ctx.conclude());
    }

    /** Exports node and transfer figures to {@code registry} (nodes are added as they join). */
    public ClusterRouter bindTo(final MeterRegistry registry)
    {
        commands.add(() ->
        {
            this.registry = registry;
            transferBytesCounter = Counter.builder("strata.router.kv_transfer_bytes").register(registry);
            Gauge.builder("strata.router.failovers", this, r -> r.view.failovers()).register(registry);
            Gauge.builder("strata.router.role_switches", this, r -> r.view.roleSwitches()).register(registry);
            Gauge.builder("strata.router.kv_transfer_gbps", this, r -> r.view.kvGBps()).register(registry);
            nodes.keySet().forEach(this::registerNodeMeters);
        });
        return this;
    }

    private void registerNodeMeters(final String node)
    {
        if (registry == null)
        {
            return;
        }
        Gauge.builder("strata.node.up", this, r -> find(r, node).alive() ? 1 : 0).tag("node", node).register(registry);
        Gauge.builder("strata.node.queue_tokens", this, r -> find(r, node).queueTokens()).tag("node", node)
            .register(registry);
        Gauge.builder("strata.node.running", this, r -> find(r, node).running()).tag("node", node).register(registry);
        Gauge.builder("strata.node.kv_blocks_free", this, r -> find(r, node).kvFree()).tag("node", node)
            .register(registry);
        Gauge.builder("strata.node.kv_bytes_sent", this, r -> find(r, node).kvBytesSent()).tag("node", node)
            .register(registry);
        Gauge.builder("strata.node.kv_retries", this, r -> find(r, node).kvRetries()).tag("node", node)
            .register(registry);
    }

    private static NodeView find(final ClusterRouter r, final String node)
    {
        for (final NodeView v : r.view.nodes())
        {
            if (v.node().equals(node))
            {
                return v;
            }
        }
        return new NodeView(node, "gone", "", 0, "", false, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    }

    /** Waits until {@code count} nodes are in rotation. */
    public void awaitNodes(final int count, final long timeoutMillis) throws InterruptedException
    {
        awaitNodes(count, null, timeoutMillis);
    }

    /** Waits until {@code count} nodes of {@code version} (any version: null) are in rotation. */
    public void awaitNodes(final int count, final String version, final long timeoutMillis)
        throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        while (view.nodes().stream().filter(n -> n.alive() && (version == null || n.version().equals(version)))
            .count() < count)
        {
            if (System.nanoTime() - deadline > 0)
            {
                throw new IllegalStateException("fewer than " + count + " nodes" + (version == null ? "" : " of " +
                    "version " + version) + " joined within " + timeoutMillis + " ms: " + view.nodes());
            }
            Thread.sleep(20);
        }
    }

    /**
     * Drops a node that is out of rotation from the router's list (a node stopped for good, such as one of a version
     * the deployment left); a node in rotation stays. Completes with whether it was dropped.
     */
    public CompletableFuture<Boolean> forget(final String node)
    {
        final CompletableFuture<Boolean> result = new CompletableFuture<>();
        commands.add(() ->
        {
            final Node n = nodes.get(node);
            final boolean drop = n != null && !n.alive;
            if (drop)
            {
                nodes.remove(node);
                CloseHelper.quietClose(n.pub);
                view = snapshot();
            }
            result.complete(drop);
        });
        return result;
    }

    /**
     * Binds the requests that arrive from now on to {@code version}; those bound before keep theirs and finish on its
     * nodes, except requests still waiting for a node, which have no token yet and take the new version. Completes
     * once the router thread has switched, with its view at that moment.
     */
    public CompletableFuture<RouterView> switchVersion(final String version)
    {
        Objects.requireNonNull(version, "version");
        final CompletableFuture<RouterView> result = new CompletableFuture<>();
        commands.add(() ->
        {
            if (!version.equals(current))
            {
                LOG.info("version " + current + " -> " + version + " for new requests");
                current = version;
                for (final Req r : pending)
                {
                    if (r.generated.isEmpty())
                    {
                        r.version = version;
                    }
                }
            }
            view = snapshot();
            result.complete(view);
        });
        return result;
    }

    public RouterView view()
    {
        return view;
    }

    /** Switches a node's role by hand: it takes no new work of its old role; what runs there finishes there. */
    public CompletableFuture<Void> setRole(final String node, final Msg.Role role)
    {
        final CompletableFuture<Void> result = new CompletableFuture<>();
        commands.add(() ->
        {
            final Node n = nodes.get(node);
            if (n == null || !n.alive)
            {
                result.completeExceptionally(new IllegalArgumentException("no node '" + node + "' in rotation"));
                return;
            }
            if (n.role != role)
            {
                send(n, new Msg.SetRole(role));
                LOG.info("node " + node + ": role " + n.role + " -> " + role);
                n.role = role;
                roleSwitches++;
            }
            result.complete(null);
        });
        return result;
    }

    @Override
    public RequestHandle submit(final GenerationRequest request, final GenerationListener listener)
    {
        return submit(request, listener, null);
    }

    /**
     * As {@link #submit(GenerationRequest, GenerationListener)}, bound to {@code version} instead of the current one
     * (null: the current one): a canary's share of requests runs on the canary's nodes.
     */
    public RequestHandle submit(final GenerationRequest request, final GenerationListener listener,
        final String version)
    {
        if (closed)
        {
            throw new IllegalStateException("router closed");
        }
        final int vocab = vocabSize;
        for (final int t : request.prompt())
        {
            if (vocab > 0 && (t < 0 || t >= vocab))
            {
                throw new IllegalArgumentException("token id " + t + " outside the vocabulary [0, " + vocab + ")");
            }
        }
        if (maxContext > 0 && request.prompt().length >= maxContext)
        {
            throw new IllegalArgumentException("prompt of " + request.prompt().length + " tokens does not fit the " +
                "context of " + maxContext + " tokens");
        }
        final Req r = new Req(ids.incrementAndGet(), request, listener);
        commands.add(() ->
        {
            r.version = version != null ? version : current;
            requests++;
            active.add(r);
            dispatch(r);
        });
        return r;
    }

    /** This router as a service whose requests are all bound to {@code version} (a canary's). */
    public GenerationService bound(final String version)
    {
        Objects.requireNonNull(version, "version");
        final ClusterRouter router = this;
        return new GenerationService()
        {
            @Override
            public RequestHandle submit(final GenerationRequest request, final GenerationListener listener)
            {
                return router.submit(request, listener, version);
            }

            @Override
            public int maxContext()
            {
                return router.maxContext();
            }

            @Override
            public int vocabSize()
            {
                return router.vocabSize();
            }

            @Override
            public Engine.Stats stats()
            {
                return router.stats();
            }
        };
    }

    @Override
    public int maxContext()
    {
        return maxContext;
    }

    @Override
    public int vocabSize()
    {
        return vocabSize;
    }

    @Override
    public Engine.Stats stats()
    {
        final RouterView v = view;
        int running = 0;
        int waiting = v.pending();
        int blocks = 0;
        int free = 0;
        for (final NodeView n : v.nodes())
        {
            if (n.alive())
            {
                running += n.running();
                waiting += n.waiting();
                blocks += n.kvBlocks();
                free += n.kvFree();
            }
        }
        return new Engine.Stats(0, 0, running, waiting, blocks, blocks - free, 0, 0, 0, 0);
    }

    // ---- the router thread ----

    private void run()
    {
        final FragmentAssembler handler = new FragmentAssembler((buffer, offset, length, header) ->
        {
            final byte[] bytes = new byte[length];
            buffer.getBytes(offset, bytes);
            try
            {
                onMessage(Msg.decode(bytes));
            }
            catch (final RuntimeException e)
            {
                LOG.log(java.util.logging.Level.WARNING, "router: a node message failed", e);
            }
        });
        final FragmentAssembler udpHandler = new FragmentAssembler(handler.delegate());
        long nextCheck = 0;
        final org.agrona.concurrent.BackoffIdleStrategy idle = new org.agrona.concurrent.BackoffIdleStrategy(0, 0,
            TimeUnit.MICROSECONDS.toNanos(100), TimeUnit.MILLISECONDS.toNanos(1));
        while (!closed)
        {
            int work = 0;
            Runnable c;
            while ((c = commands.poll()) != null)
            {
                c.run();
                work++;
            }
            work += inbound.poll(handler, 64);
            if (udpInbound != null)
            {
                work += udpInbound.poll(udpHandler, 64);
            }
            final long now = System.nanoTime();
            if (now - nextCheck >= 0)
            {
                nextCheck = now + TimeUnit.MILLISECONDS.toNanos(50);
                checkNodes(now);
                retryPending(now);
                if (now - nextRatioCheck >= 0)
                {
                    nextRatioCheck = now + TimeUnit.SECONDS.toNanos(1);
                    balance(now);
                }
                view = snapshot();
            }
            // parks of 100 us after work, growing to 1 ms while there is none: at a fixed 200 us the router's
            // wake-ups took 6-10% of a core, which it shares with the prefill nodes (ClusterLauncher pins it there)
            idle.idle(work);
        }
        for (final Req r : new ArrayList<>(active))
        {
            cancelOnNodes(r);
            finish(r, FinishReason.CANCELLED, "router closed");
        }
    }

    private void onMessage(final Msg m)
    {
        switch (m)
        {
            case Msg.Heartbeat h -> onHeartbeat(h);
            case Msg.Token t -> onToken(t);
            case Msg.Done d -> onDone(d);
            case Msg.Failed f -> onFailed(f);
            case Msg.Prefilled p -> onPrefilled(p);
            default -> LOG.warning("router: unexpected " + m.getClass().getSimpleName());
        }
    }

    private void onHeartbeat(final Msg.Heartbeat h)
    {
        Node n = nodes.get(h.node());
        final boolean fresh = n == null || !n.alive || n.hb.pid() != h.pid();
        if (n == null)
        {
            n = new Node();
            nodes.put(h.node(), n);
            registerNodeMeters(h.node());
        }
        if (fresh)
        {
            if (n.pub != null && (!n.hb.channel().equals(h.channel()) || n.hb.controlStream() != h.controlStream()))
            {
                CloseHelper.quietClose(n.pub);
                n.pub = null;
            }
            if (n.pub == null)
            {
                n.pub = ctx.aeron.addPublication(h.channel(), h.controlStream());
            }
            n.role = h.role();
            if (n.hb != null && n.hb.pid() == h.pid())
            {
                for (final long wire : n.abandoned)
                {
                    sendTo(n.pub, h.node(), new Msg.Cancel(wire)); // moved while it was silent
                }
            }
            n.abandoned.clear();
            LOG.info("node " + h.node() + " (pid " + h.pid() + ", " + h.role() + ", version " + h.version() +
                ") joined");
            maxContext = h.maxContext();
            vocabSize = h.vocabSize();
        }
        n.hb = h;
        n.role = h.role();
        n.seen = System.nanoTime();
        n.alive = true;
        n.assignedTokens = 0;
        n.assignedBlocks = 0;
    }

    private void onToken(final Msg.Token t)
    {
        final Req r = byWire.get(t.id());
        if (r == null || r.finished || !t.node().equals(r.decodeNode))
        {
            return; // a node the request left, or an ended request
        }
        final int token = t.token();
        final long now = System.nanoTime();
        if (r.lastToken != 0)
        {
            tpotNanos += now - r.lastToken;
            tpotCount++;
        }
        r.lastToken = now;
        r.generated.addInt(token);
        if (r.firstToken == 0)
        {
            r.firstToken = System.nanoTime();
        }
        final boolean stopToken = r.request.stopsAt(token, ctx.endOfGeneration);
        final boolean last = r.generated.size() >= r.request.maxTokens() ||
            r.request.prompt().length + r.generated.size() >= maxContext;
        final String delta = r.text.accept(token, stopToken, last);
        try
        {
            r.listener.onToken(new TokenEvent(token, delta, t.logprob(), t.topTokens() == null ? new int[0] :
                t.topTokens(), t.topLogprobs() == null ? new float[0] : t.topLogprobs()));
        }
        catch (final RuntimeException e)
        {
            cancelOnNodes(r);
            finish(r, FinishReason.CANCELLED, null);
            return;
        }
        if (r.text.stopped())
        {
            cancelOnNodes(r);
            finish(r, FinishReason.STOP, null);
        }
        else if (stopToken || last)
        {
            r.ending = stopToken ? FinishReason.STOP : FinishReason.LENGTH;
        }
    }

    private void onDone(final Msg.Done d)
    {
        final Req r = byWire.get(d.id());
        if (r == null || r.finished || !d.node().equals(r.decodeNode))
        {
            return;
        }
        r.cachedTokens += d.cachedTokens();
        final FinishReason reason = r.ending != null ? r.ending : FinishReason.valueOf(d.reason());
        if (reason == FinishReason.ERROR && r.moves < ctx.maxMoves && d.error() != null &&
            d.error().startsWith("forward pass failed"))
        {
            retries++;
            redispatch(r, "node " + d.node() + ": " + d.error());
            return;
        }
        finish(r, reason, d.error());
    }

    private void onFailed(final Msg.Failed f)
    {
        final Req r = byWire.get(f.id());
        if (r == null || r.finished)
        {
            return;
        }
        retries++;
        if (r.moves >= ctx.maxMoves)
        {
            cancelOnNodes(r);
            finish(r, FinishReason.ERROR, "gave up after " + r.moves + " moves: " + f.error());
            return;
        }
        cancelOnNodes(r);
        redispatch(r, f.node() + ": " + f.error());
    }

    private void onPrefilled(final Msg.Prefilled p)
    {
        final Req r = byWire.get(p.id());
        kvBytes += p.bytes();
        kvNanos += p.transferNanos();
        kvExposedNanos += p.exposedNanos();
        if (transferBytesCounter != null)
        {
            transferBytesCounter.increment(p.bytes());
        }
        if (r != null && r.dispatched != 0)
        {
            prefillDelayNanos += System.nanoTime() - r.dispatched;
            prefillCount++;
        }
        if (r != null)
        {
            r.prefillNode = null; // the prefill half is over: a prefill node's death no longer concerns it
        }
    }

    private void redispatch(final Req r, final String why)
    {
        byWire.remove(r.wire);
        r.moves++;
        LOG.info("request " + r.id + " moves (" + why + ") after " + r.generated.size() + " tokens");
        dispatch(r);
    }

    /** Sends a request (prompt plus what it generated so far) to the nodes that should run it now. */
    private void dispatch(final Req r)
    {
        if (r.ending != null)
        {
            finish(r, r.ending, null); // every token arrived; only the node's Done was lost with it
            return;
        }
        final int[] prompt = new int[r.request.prompt().length + r.generated.size()];
        System.arraycopy(r.request.prompt(), 0, prompt, 0, r.request.prompt().length);
        for (int i = 0; i < r.generated.size(); i++)
        {
            prompt[r.request.prompt().length + i] = r.generated.getInt(i);
        }
        final int remaining = r.request.maxTokens() - r.generated.size();
        final long prefix = prompt.length > PREFIX_TOKENS ?
            dev.strata.compute.model.KvBlockPool.chainHash(0L, prompt, 0, PREFIX_TOKENS) : 0L;
        final Node decode = pickDecode(prefix, r.version);
        if (decode == null)
        {
            if (!pending.contains(r))
            {
                pending.addLast(r);
            }
            return;
        }
        final Node prefill = prompt.length >= ctx.splitMinPrompt ? pick(true, r.version) : null;
        r.dispatched = System.nanoTime();
        r.lastToken = 0;
        if (r.firstDispatched == 0)
        {
            r.firstDispatched = r.dispatched;
        }
        final Msg.Spec spec = Msg.Spec.of(r.request.withoutStopStrings().resumedAfter(r.generated.toIntArray()));
        final long wire = nextWire++;
        r.wire = wire;
        byWire.put(wire, r);
        r.decodeNode = decode.hb.node();
        if (prefix != 0L)
        {
            decode.recentPrefixes.remove(prefix);
            decode.recentPrefixes.add(prefix);
            if (decode.recentPrefixes.size() > 1024)
            {
                decode.recentPrefixes.remove(decode.recentPrefixes.iterator().next());
            }
        }
        decode.assignedBlocks += (prompt.length + remaining + 15) / 16;
        if (prefill != null && prefill != decode)
        {
            split++;
            r.prefillNode = prefill.hb.node();
            prefill.assignedTokens += prompt.length;
            send(prefill, new Msg.Run(wire, true, spec, r.version, decode.hb.node(), decode.hb.channel(),
                decode.hb.controlStream()));
        }
        else
        {
            whole++;
            r.prefillNode = null;
            decode.assignedTokens += prompt.length;
            send(decode, new Msg.Run(wire, false, spec, r.version, null, null, 0));
        }
    }

    /**
     * The node of {@code version} for a half: prefill to the prefill node with the shortest queue in tokens; decode to
     * the decode node with the most free KV blocks. {@code both} nodes serve either when no dedicated node is in
     * rotation.
     */
    private Node pick(final boolean forPrefill, final String version)
    {
        Node best = null;
        for (final Node n : nodes.values())
        {
            if (!n.alive || !n.hb.version().equals(version) ||
                !(forPrefill ? n.role == Msg.Role.PREFILL : n.role.decodes()))
            {
                continue;
            }
            if (best == null || (forPrefill ? queue(n) < queue(best) : free(n) > free(best)))
            {
                best = n;
            }
        }
        return best;
    }

    /** Tokens of the prompt start that identify a shared prefix for placement (one KV block). */
    private static final int PREFIX_TOKENS = 16;

    /**
     * The decode node for a request: the one with the most free KV blocks, unless a node that was sent the same
     * prompt start lately (its prefix cache likely holds those blocks, which then need no transfer) has at least half
     * as many free.
     */
    private Node pickDecode(final long prefix, final String version)
    {
        final Node most = pick(false, version);
        if (most == null || prefix == 0L)
        {
            return most;
        }
        Node affine = null;
        for (final Node n : nodes.values())
        {
            if (n.alive && n.hb.version().equals(version) && n.role.decodes() && n.recentPrefixes.contains(prefix) &&
                (affine == null || free(n) > free(affine)))
            {
                affine = n;
            }
        }
        return affine != null && free(affine) * 2 >= free(most) ? affine : most;
    }

    private static long queue(final Node n)
    {
        return n.hb.queueTokens() + n.assignedTokens;
    }

    private static long free(final Node n)
    {
        return (long)n.hb.kvFree() - n.assignedBlocks;
    }

    private void retryPending(final long now)
    {
        for (int i = pending.size(); i > 0; i--)
        {
            final Req r = pending.pollFirst();
            if (r.finished)
            {
                continue;
            }
            if (now - r.submitted > TimeUnit.SECONDS.toNanos(60))
            {
                finish(r, FinishReason.ERROR, "no compute node in rotation for 60 s");
                continue;
            }
            dispatch(r);
        }
    }

    /**
     * The dynamic prefill/decode ratio: once a second, the last second's mean prefill delay (dispatch to KV at the
     * decode node) and time per output token; a pool that stays the bottleneck for the window gets a node of the
     * other pool.
     */
    private void balance(final long now)
    {
        final double tpot = tpotCount == 0 ? 0 : tpotNanos / 1e6 / tpotCount;
        final double prefill = prefillCount == 0 ? 0 : prefillDelayNanos / 1e6 / prefillCount;
        lastTpotMillis = tpot;
        lastPrefillDelayMillis = prefill;
        tpotNanos = tpotCount = prefillDelayNanos = prefillCount = 0;
        if (!ctx.autoRatio)
        {
            return;
        }
        final int which = prefill > ctx.ttftTargetMillis && tpot < ctx.tpotTargetMillis / 2.0 ? 1 :
            tpot > ctx.tpotTargetMillis && prefill < ctx.ttftTargetMillis / 2.0 ? 2 : 0;
        if (which == 0 || which != bottleneck)
        {
            bottleneck = which;
            bottleneckSince = now;
            return;
        }
        if (now - bottleneckSince < TimeUnit.MILLISECONDS.toNanos(ctx.ratioWindowMillis))
        {
            return;
        }
        // prefill is the bottleneck: a decode node becomes a prefill node, and the other way round
        final Msg.Role from = which == 1 ? Msg.Role.DECODE : Msg.Role.PREFILL;
        final Msg.Role to = which == 1 ? Msg.Role.PREFILL : Msg.Role.DECODE;
        Node pick = null;
        int pool = 0;
        for (final Node n : nodes.values())
        {
            if (n.alive && n.role == from && n.hb.version().equals(current))
            {
                pool++;
                if (pick == null || n.hb.running() + n.hb.queueTokens() < pick.hb.running() + pick.hb.queueTokens())
                {
                    pick = n;
                }
            }
        }
        bottleneckSince = now; // a window after each switch before the next
        if (pool < 2)
        {
            return;
        }
        LOG.info(String.format("%s is the bottleneck (prefill delay %.0f ms, TPOT %.0f ms): node %s switches to %s",
            which == 1 ? "prefill" : "decode", prefill, tpot, pick.hb.node(), to));
        send(pick, new Msg.SetRole(to));
        pick.role = to;
        roleSwitches++;
    }

    /** Takes nodes that missed their heartbeats out of rotation and moves their requests. */
    private void checkNodes(final long now)
    {
        for (final Node n : nodes.values())
        {
            if (!n.alive)
            {
                continue;
            }
            final long silent = now - n.seen;
            final long timeout = TimeUnit.MILLISECONDS.toNanos(ctx.nodeTimeoutMillis);
            final boolean gone = n.processGone();
            // a local node whose process runs gets five timeouts before it counts as hung
            if (gone || (silent > timeout && !(n.processAlive() && silent <= 5 * timeout)))
            {
                n.alive = false;
                LOG.warning("node " + n.hb.node() + " (pid " + n.hb.pid() + ") " + (gone ? "exited" :
                    "missed its heartbeats for " + TimeUnit.NANOSECONDS.toMillis(silent) + " ms") +
                    ": out of rotation");
                for (final Req r : new ArrayList<>(active))
                {
                    if (!r.finished && (n.hb.node().equals(r.prefillNode) || n.hb.node().equals(r.decodeNode)))
                    {
                        failovers++;
                        if (!gone)
                        {
                            n.abandoned.add(r.wire);
                        }
                        cancelOnNodes(r);
                        redispatch(r, "node " + n.hb.node() + " is gone");
                    }
                }
            }
        }
    }

    private void cancelOnNodes(final Req r)
    {
        for (final String name : new String[]{r.prefillNode, r.decodeNode})
        {
            final Node n = name == null ? null : nodes.get(name);
            if (n != null && n.alive)
            {
                send(n, new Msg.Cancel(r.wire));
            }
        }
    }

    private void finish(final Req r, final FinishReason reason, final String error)
    {
        if (r.finished)
        {
            return;
        }
        r.finished = true;
        byWire.remove(r.wire);
        active.remove(r);
        pending.remove(r);
        final long now = System.nanoTime();
        final Completion c = new Completion(r.generated.toIntArray(), r.text.text(), reason,
            r.request.prompt().length, r.cachedTokens, r.moves, r.firstDispatched == 0 ? 0 :
            r.firstDispatched - r.submitted, r.firstToken == 0 ? 0 : r.firstToken - r.submitted, now - r.submitted,
            error);
        try
        {
            r.listener.onComplete(c);
        }
        catch (final RuntimeException e)
        {
            LOG.warning("listener of request " + r.id + " failed on completion: " + e);
        }
        finally
        {
            r.done.complete(c);
        }
    }

    private void send(final Node n, final Msg m)
    {
        sendTo(n.pub, n.hb.node(), m);
    }

    private static void sendTo(final Publication pub, final String node, final Msg m)
    {
        final String failure = Msg.offer(pub, m, 500);
        if (failure != null)
        {
            LOG.warning("router: could not send " + m.getClass().getSimpleName() + " to " + node + " (" + failure +
                ")");
        }
    }

    private RouterView snapshot()
    {
        final List<NodeView> list = new ArrayList<>();
        final long now = System.nanoTime();
        for (final Node n : nodes.values())
        {
            final Msg.Heartbeat h = n.hb;
            list.add(new NodeView(h.node(), (n.role == null ? h.role() : n.role).name().toLowerCase(
                java.util.Locale.ROOT), h.version(), h.pid(), h.channel() + " stream " + h.controlStream(), n.alive,
                h.queueTokens(), h.running(), h.waiting(), h.kvBlocks(), h.kvFree(), h.kvBytesSent(), h.kvBytesReceived(),
                h.kvTransfers(), h.kvRetries(), h.kvSendNanos() == 0 ? 0 : (double)h.kvBytesSent() / h.kvSendNanos(),
                h.requests(), TimeUnit.NANOSECONDS.toMillis(now - n.seen)));
        }
        final Map<String, Integer> byVersion = new java.util.TreeMap<>();
        for (final Req r : active)
        {
            byVersion.merge(r.version, 1, Integer::sum);
        }
        return new RouterView(current, requests, split, whole, failovers, retries, roleSwitches, kvBytes,
            TimeUnit.NANOSECONDS.toMillis(kvNanos), kvNanos == 0 ? 0 : (double)kvBytes / kvNanos,
            TimeUnit.NANOSECONDS.toMillis(kvExposedNanos), lastPrefillDelayMillis,
            lastTpotMillis, active.size(), pending.size(), Map.copyOf(byVersion), List.copyOf(list));
    }

    @Override
    public void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        try
        {
            thread.join(5_000);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        for (final Node n : nodes.values())
        {
            CloseHelper.quietClose(n.pub);
        }
        CloseHelper.quietCloseAll(inbound, udpInbound);
    }
}
