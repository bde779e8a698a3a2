package dev.strata.compute.cluster;

import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.engine.GenerationListener;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.transport.bulk.BulkReceiver;
import dev.strata.transport.bulk.BulkSender;
import io.aeron.Aeron;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.CloseHelper;
import org.agrona.concurrent.BackoffIdleStrategy;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A compute node in a split deployment: its engine, and the Aeron side that makes it one of the router's nodes.
 * <ul>
 * <li>Every {@code heartbeatMillis} it sends the router a {@link Msg.Heartbeat} (registration, load, KV use).</li>
 * <li>{@link Msg.Run} in full mode runs a request here and streams its tokens to the router.</li>
 * <li>In prefill mode the engine computes the KV of the prompt less its last token ({@link Engine#prefill}); a
 * transfer thread offers it to the decode node, sends the blocks the decode node does not have as bulk chunks
 * straight from the pool, waits for the acknowledgement, re-sends once on a damaged chunk, and frees the blocks.</li>
 * <li>As a decode node it reserves blocks for an offer ({@link Engine#reserve}; no room is answered as
 * back-pressure), receives the chunks into them, and submits the request with that KV: only the last prompt token
 * is computed here, and every sampling step, so the tokens are those of a colocated run.</li>
 * </ul>
 * Blocks carry the model version: an offer from another version, KV type or block layout is refused.
 */
public final class NodeAgent implements AutoCloseable
{
    private static final Logger LOG = Logger.getLogger(NodeAgent.class.getName());

    /** Settings of a node agent. */
    public static final class Context
    {
        private Engine engine;
        private Aeron aeron;
        private String node;
        private Msg.Role role = Msg.Role.BOTH;
        private String routerChannel;
        private int routerStream = ROUTER_STREAM;
        private String channel = "aeron:ipc";
        private int controlStream;
        private long heartbeatMillis = 200;
        private long transferTimeoutMillis = 30_000;

        public Context engine(final Engine engine)
        {
            this.engine = engine;
            return this;
        }

        public Context aeron(final Aeron aeron)
        {
            this.aeron = aeron;
            return this;
        }

        public Context node(final String node)
        {
            this.node = node;
            return this;
        }

        public Context role(final Msg.Role role)
        {
            this.role = role;
            return this;
        }

        /** Where the router listens (its stream is {@link #ROUTER_STREAM} unless set). */
        public Context router(final String channel, final int stream)
        {
            this.routerChannel = channel;
            this.routerStream = stream;
            return this;
        }

        /** Where this node listens: control messages on {@code stream}, KV chunks on {@code stream + 1}. */
        public Context listen(final String channel, final int stream)
        {
            this.channel = channel;
            this.controlStream = stream;
            return this;
        }

        public Context heartbeatMillis(final long ms)
        {
            this.heartbeatMillis = ms;
            return this;
        }

        public Context transferTimeoutMillis(final long ms)
        {
            this.transferTimeoutMillis = ms;
            return this;
        }

        Context conclude()
        {
            Objects.requireNonNull(engine, "engine");
            Objects.requireNonNull(aeron, "aeron");
            Objects.requireNonNull(routerChannel, "router channel");
            if (node == null || node.isBlank())
            {
                node = role.name().toLowerCase(java.util.Locale.ROOT) + "-" + ProcessHandle.current().pid();
            }
            if (controlStream == 0)
            {
                controlStream = defaultStream(ProcessHandle.current().pid());
            }
            if (heartbeatMillis <= 0 || transferTimeoutMillis <= 0)
            {
                throw new IllegalArgumentException("heartbeat and transfer timeouts must be positive");
            }
            return this;
        }
    }

    /** This machine's name, so that a router on the same host can watch a node's process as well as its beats. */
    public static final String HOST = hostName();

    private static String hostName()
    {
        try
        {
            return java.net.InetAddress.getLocalHost().getHostName();
        }
        catch (final java.io.IOException e)
        {
            return "unknown";
        }
    }

    /** The router's stream. */
    public static final int ROUTER_STREAM = 0x5100;

    /** A node's control stream by default: unique among the processes of one host (one media driver). */
    public static int defaultStream(final long pid)
    {
        return 0x100000 + (int)(pid % 0x1000000) * 2;
    }

    /**
     * The channel that bulk chunks use towards a node listening on {@code channel}: the largest MTU (one chunk per
     * message, no reassembly copy) and 8 MiB terms. Measured (`strata bench kv`): with 64 MiB terms the first four
     * 46 MB transfers ran at 0.1-0.3 GB/s while the kernel zero-filled the 192 MiB log page by page, and only then at
     * 5-9 GB/s; 8 MiB terms are warm after the first 24 MiB.
     */
    public static String bulkChannel(final String channel)
    {
        if (channel.startsWith("aeron:ipc"))
        {
            return "aeron:ipc?mtu=65504|term-length=8m";
        }
        // UDP: the KV stream has its own endpoint (the control port + 1), whose socket gets 2 MiB buffers and
        // receive window; a receive endpoint's socket is shared by its subscriptions, so it cannot be the control's
        final java.util.regex.Matcher m = java.util.regex.Pattern.compile("endpoint=([^|:]+):(\\d+)").matcher(channel);
        if (!m.find())
        {
            throw new IllegalArgumentException("a UDP channel needs endpoint=HOST:PORT: " + channel);
        }
        return "aeron:udp?endpoint=" + m.group(1) + ":" + (Integer.parseInt(m.group(2)) + 1) +
            "|mtu=8192|term-length=8m|so-sndbuf=2m|so-rcvbuf=2m|rcv-wnd=2m";
    }

    private final Context ctx;
    private final Engine engine;
    private final Publication router;
    private final Subscription control;
    private final Subscription kv;
    private final BulkReceiver receiver;
    private final Map<String, Publication> peers = new ConcurrentHashMap<>();
    private final Map<Long, Engine.Handle> running = new ConcurrentHashMap<>();
    private final Map<Long, BlockingQueue<Msg>> replies = new ConcurrentHashMap<>();
    private final Map<Long, Boolean> cancelled = new ConcurrentHashMap<>();
    private final Map<Long, Import> imports = new ConcurrentHashMap<>();
    private final ConcurrentLinkedQueue<Runnable> agentTasks = new ConcurrentLinkedQueue<>();
    private final ExecutorService transfers;
    private final Thread agent;
    private final AtomicLong queueTokens = new AtomicLong();
    private final AtomicLong kvBytesSent = new AtomicLong();
    private final AtomicLong kvBytesReceived = new AtomicLong();
    private final AtomicLong kvTransfers = new AtomicLong();
    private final AtomicLong kvRetries = new AtomicLong();
    private final AtomicLong kvSendNanos = new AtomicLong();
    private final AtomicLong kvBytesStreamed = new AtomicLong();
    private final AtomicLong requests = new AtomicLong();
    private volatile Msg.Role role;
    private volatile boolean closed;
    private long nextHeartbeat;

    /**
     * A transfer this node (as decode node) expects; it expires when no byte of it arrived for the transfer timeout
     * (the prefill node streams a long prompt's layers over the whole of its prefill).
     */
    private record Import(Msg.KvOffer offer, Engine.KvRun run, MemorySegment[] parts, int attempt,
        BulkReceiver.Transfer transfer, long bytesSeen, long deadline)
    {
    }

    private NodeAgent(final Context ctx)
    {
        this.ctx = ctx;
        this.engine = ctx.engine;
        this.role = ctx.role;
        final Aeron aeron = ctx.aeron;
        Publication r = null;
        Subscription c = null;
        Subscription k = null;
        try
        {
            r = aeron.addPublication(ctx.routerChannel, ctx.routerStream);
            c = aeron.addSubscription(ctx.channel, ctx.controlStream);
            k = aeron.addSubscription(bulkChannel(ctx.channel), ctx.controlStream + 1);
        }
        catch (final RuntimeException e)
        {
            CloseHelper.quietCloseAll(r, c, k);
            throw e;
        }
        this.router = r;
        this.control = c;
        this.kv = k;
        this.receiver = new BulkReceiver(this::onTransferDone);
        this.transfers = Executors.newCachedThreadPool(
            Thread.ofPlatform().name(ctx.node + "-kv-send-", 0).daemon().factory());
        this.agent = Thread.ofPlatform().name(ctx.node + "-agent").daemon().unstarted(this::run);
        agent.start();
    }

    public static NodeAgent launch(final Context ctx)
    {
        return new NodeAgent(ctx.conclude());
    }

    public String node()
    {
        return ctx.node;
    }

    public Msg.Role role()
    {
        return role;
    }

    private void run()
    {
        final FragmentAssembler controlHandler = new FragmentAssembler((buffer, offset, length, header) ->
        {
            final byte[] bytes = new byte[length];
            buffer.getBytes(offset, bytes);
            final Msg m;
            try
            {
                m = Msg.decode(bytes);
            }
            catch (final IllegalArgumentException e)
            {
                LOG.warning(ctx.node + ": dropped a message: " + e.getMessage());
                return;
            }
            try
            {
                onMessage(m);
            }
            catch (final RuntimeException e)
            {
                LOG.log(Level.WARNING, ctx.node + ": handling " + m.getClass().getSimpleName() + " failed", e);
            }
        });
        final BackoffIdleStrategy idle = new BackoffIdleStrategy(0, 0, TimeUnit.MILLISECONDS.toNanos(1),
            TimeUnit.MILLISECONDS.toNanos(4));
        while (!closed)
        {
            int work = 0;
            try
            {
                Runnable task;
                while ((task = agentTasks.poll()) != null)
                {
                    task.run();
                    work++;
                }
                work += control.poll(controlHandler, 16);
                work += kv.poll(receiver, 64);
                final long now = System.nanoTime();
                if (now - nextHeartbeat >= 0)
                {
                    nextHeartbeat = now + TimeUnit.MILLISECONDS.toNanos(ctx.heartbeatMillis);
                    heartbeat();
                    expireImports(now);
                }
            }
            catch (final RuntimeException e)
            {
                LOG.log(Level.WARNING, ctx.node + ": agent error", e);
            }
            // parks of 1 ms after work, growing to 4 ms while there is none: the agent shares a node's core with its
            // engine, and every wake-up preempts a step (at 1 ms, and yielding while KV arrived, it took 4% of a
            // decode node's core). A KV transfer waits in the stream's log buffer meanwhile (64 chunks a poll)
            idle.idle(work);
        }
    }

    private void heartbeat()
    {
        final Engine.Stats s = engine.stats();
        send(router, new Msg.Heartbeat(ctx.node, role, ProcessHandle.current().pid(), HOST, ctx.channel,
            ctx.controlStream,
            ctx.controlStream + 1, engine.modelVersion(), engine.maxContext(), engine.vocabSize(), queueTokens.get(),
            s.running(), s.waiting(), s.kvBlocks(), s.kvBlocks() - s.kvBlocksInUse(), kvBytesSent.get(),
            kvBytesReceived.get(), kvTransfers.get(), kvRetries.get(), kvSendNanos.get(), requests.get()));
    }

    private void onMessage(final Msg m)
    {
        switch (m)
        {
            case Msg.Run r -> onRun(r);
            case Msg.Cancel c -> onCancel(c.id());
            case Msg.KvOffer o -> onOffer(o);
            case Msg.KvAccept a -> reply(a.id(), a);
            case Msg.KvAck a -> reply(a.id(), a);
            case Msg.SetRole s ->
            {
                LOG.info(ctx.node + ": role " + role + " -> " + s.role());
                role = s.role();
                heartbeat();
            }
            default -> LOG.warning(ctx.node + ": unexpected " + m.getClass().getSimpleName());
        }
    }

    private void reply(final long id, final Msg m)
    {
        final BlockingQueue<Msg> q = replies.get(id);
        if (q != null)
        {
            q.add(m);
        }
    }

    private void onRun(final Msg.Run r)
    {
        requests.incrementAndGet();
        if (!r.version().equals(engine.modelVersion()))
        {
            send(router, new Msg.Failed(r.id(), ctx.node, "version mismatch: the request is for " + r.version() +
                ", this node runs " + engine.modelVersion()));
            return;
        }
        final int[] prompt = r.spec().prompt();
        if (!r.prefillOnly())
        {
            final Engine.Handle h;
            try
            {
                h = engine.submit(r.spec().request(), toRouter(r.id()));
            }
            catch (final IllegalArgumentException | IllegalStateException e)
            {
                send(router, new Msg.Done(r.id(), ctx.node, "ERROR", e.getMessage(), 0, 0));
                return;
            }
            running.put(r.id(), h);
            return;
        }
        final int[] prefix = Arrays.copyOf(prompt, prompt.length - 1);
        queueTokens.addAndGet(prefix.length);
        final long started = System.nanoTime();
        final KvStream stream = new KvStream(engine.config().layers(), prefix.length);
        final Engine.Handle h;
        try
        {
            h = engine.prefill(prefix, new Engine.PrefillListener()
            {
                @Override
                public void onPrefilled(final Engine.KvRun run)
                {
                    queueTokens.addAndGet(-prefix.length);
                    running.remove(r.id());
                    if (!stream.prefilled(run, System.nanoTime() - started))
                    {
                        engine.release(run); // the transfer gave up
                        cancelled.remove(r.id());
                    }
                }

                @Override
                public void onFailed(final String error)
                {
                    queueTokens.addAndGet(-prefix.length);
                    running.remove(r.id());
                    stream.fail(error);
                    if (cancelled.remove(r.id()) == null)
                    {
                        send(router, new Msg.Failed(r.id(), ctx.node, "prefill failed: " + error));
                    }
                }

                @Override
                public void onLayerStored(final int layer, final int positions, final int[] blocks)
                {
                    stream.stored(layer, positions, blocks);
                    AFTER_LAYER.run();
                }

                @Override
                public void onReleased()
                {
                    stream.released();
                }
            });
        }
        catch (final IllegalArgumentException | IllegalStateException e)
        {
            queueTokens.addAndGet(-prefix.length);
            send(router, new Msg.Done(r.id(), ctx.node, "ERROR", e.getMessage(), 0, 0));
            return;
        }
        running.put(r.id(), h);
        transfers.execute(() -> transfer(r, prefix, stream));
    }

    private void onCancel(final long id)
    {
        cancelled.put(id, Boolean.TRUE);
        final Engine.Handle h = running.remove(id);
        if (h != null)
        {
            h.cancel();
        }
        final Import imp = imports.remove(id);
        if (imp != null)
        {
            receiver.forget(id);
            engine.release(imp.run());
        }
    }

    /** Tokens and the end of a request that runs here, to the router. */
    private GenerationListener toRouter(final long id)
    {
        return new GenerationListener()
        {
            @Override
            public void onToken(final TokenEvent e)
            {
                send(router, new Msg.Token(id, ctx.node, e.token(), e.logprob(), e.topTokens(), e.topLogprobs()));
            }

            @Override
            public void onComplete(final Completion c)
            {
                running.remove(id);
                cancelled.remove(id);
                if (c.reason() == dev.strata.compute.engine.FinishReason.CANCELLED && c.error() == null)
                {
                    return; // the router asked for it
                }
                send(router, new Msg.Done(id, ctx.node, c.reason().name(), c.error(), c.cachedTokens(),
                    c.preemptions()));
            }
        };
    }

    // ---- prefill side: offer, send, await the acknowledgement (transfer thread) ----

    // A transfer has a thread of its own from the request's admission (a cached pool: the threads mostly wait). It
    // lasts as long as its prefill (each layer goes as it is stored), so any fixed number of threads let a request
    // whose prefill had ended wait for a thread held by requests still queued for theirs: with one, short prompts
    // waited behind a long one's whole transfer (TTFT 14-20 s); with four, an overloaded prefill node (64 requests,
    // every 4th of 2,000 tokens) held finished prefills' KV for 10-25 s each on average, 40-51% of their TTFT.

    /**
     * The parts of a KV transfer: for each layer, that layer's keys and values in each block not cached at the
     * receiver ({@code layers x blocks} parts, layer-major), so a layer can go as soon as a prefill step stored it.
     */
    static MemorySegment[] layerParts(final dev.strata.compute.model.KvBlockPool pool, final int[] blocks,
        final int skipped, final int layers)
    {
        final long layerBytes = pool.blockBytes() / layers;
        final int nb = blocks.length - skipped;
        final MemorySegment[] parts = new MemorySegment[layers * nb];
        for (int l = 0; l < layers; l++)
        {
            for (int b = 0; b < nb; b++)
            {
                parts[l * nb + b] = pool.block(blocks[skipped + b]).asSlice(l * layerBytes, layerBytes);
            }
        }
        return parts;
    }

    private void transfer(final Msg.Run r, final int[] prefix, final KvStream stream)
    {
        final long id = r.id();
        final BlockingQueue<Msg> q = new LinkedBlockingQueue<>();
        replies.put(id, q);
        final long timeout = TimeUnit.MILLISECONDS.toNanos(ctx.transferTimeoutMillis);
        final java.util.function.BooleanSupplier gone = () -> cancelled.containsKey(id) || stream.failure() != null;
        try
        {
            // offer once the prefill has started computing: the decode node holds the blocks from its accept on
            if (!stream.awaitStart(gone))
            {
                return;
            }
            final Publication peer = peer(r.decodeChannel(), r.decodeStream());
            final Msg.KvOffer offer = new Msg.KvOffer(id, ctx.node, ctx.channel, ctx.controlStream,
                engine.modelVersion(), prefix, r.spec(), engine.kvPool().type().name(), engine.kvPool().blockTokens(),
                engine.kvPool().blockBytes());
            Msg.KvAccept accept = null;
            long backoff = 5;
            long deadline = System.nanoTime() + timeout;
            while (accept == null || !accept.ok())
            {
                if (gone.getAsBoolean())
                {
                    return;
                }
                send(peer, offer);
                final Msg m = q.poll(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())),
                    TimeUnit.MILLISECONDS);
                if (!(m instanceof Msg.KvAccept a))
                {
                    fail(id, "decode node " + r.decodeNode() + " did not answer the KV offer in time");
                    return;
                }
                accept = a;
                if (!a.ok())
                {
                    if (!a.retry())
                    {
                        fail(id, "decode node " + r.decodeNode() + " refused the KV: " + a.reason());
                        return;
                    }
                    // back-pressure: wait for the decode node to free blocks; the time limit runs from the end
                    // of the prefill, which goes on meanwhile
                    final long done = stream.prefilledAt();
                    if (done != 0 && System.nanoTime() - done - timeout > 0)
                    {
                        fail(id, "decode node " + r.decodeNode() + " had no room for " + ctx.transferTimeoutMillis +
                            " ms: " + a.reason());
                        return;
                    }
                    deadline = System.nanoTime() + timeout;
                    Thread.sleep(backoff);
                    backoff = Math.min(200, backoff * 2);
                }
            }
            final int skipped = accept.cachedBlocks();
            // a sender of this transfer's own (a BulkSender is for one thread) over the destination's shared
            // publication
            final BulkSender sender = new BulkSender(peer(bulkChannel(r.decodeChannel()), r.decodeStream() + 1),
                BulkSender.sharedCoreIdle()).corruptChunks(FAULTS);
            long bytes = stream.send(sender, engine.kvPool(), id, skipped, timeout, gone, kvBytesStreamed);
            if (bytes < 0)
            {
                return; // cancelled, or the prefill failed (the router was told)
            }
            for (int attempt = 1; attempt <= 2; attempt++)
            {
                final Engine.KvRun run = stream.awaitRun(gone);
                if (run == null)
                {
                    return;
                }
                if (attempt == 2)
                {
                    bytes += sender.send(id, attempt, layerParts(engine.kvPool(), run.blocks(), skipped,
                        engine.config().layers()), System.nanoTime() + timeout, gone).bytes();
                }
                final Msg m = q.poll(Math.max(1, ctx.transferTimeoutMillis), TimeUnit.MILLISECONDS);
                if (m instanceof Msg.KvAck ack && ack.attempt() == attempt && ack.ok())
                {
                    final long end = System.nanoTime();
                    final long nanos = end - (stream.firstSentAt() != 0 ? stream.firstSentAt() : stream.prefilledAt());
                    kvBytesSent.addAndGet(bytes);
                    kvTransfers.incrementAndGet();
                    kvSendNanos.addAndGet(nanos);
                    send(router, new Msg.Prefilled(id, ctx.node, r.decodeNode(), bytes, stream.prefillNanos(), nanos,
                        end - stream.prefilledAt(), attempt, skipped));
                    return;
                }
                if (m == null)
                {
                    fail(id, "decode node " + r.decodeNode() + " did not acknowledge the KV in time");
                    return;
                }
                kvRetries.incrementAndGet();
                LOG.warning(ctx.node + ": KV of request " + id + " to " + r.decodeNode() + " attempt " + attempt +
                    " failed (" + (m instanceof Msg.KvAck a ? a.reason() : m) + ")" + (attempt == 1 ? ": re-sending" :
                    ""));
            }
            fail(id, "the KV reached decode node " + r.decodeNode() + " damaged twice");
        }
        catch (final TimeoutException | RuntimeException e)
        {
            if (!gone.getAsBoolean())
            {
                fail(id, "KV transfer to " + r.decodeNode() + " failed: " + e.getMessage());
            }
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        finally
        {
            replies.remove(id);
            cancelled.remove(id);
            final Engine.KvRun run = stream.abandon();
            if (run != null)
            {
                engine.release(run);
            }
            else
            {
                final Engine.Handle h = running.remove(id);
                if (h != null)
                {
                    // the transfer ended before the prefill: no use computing the rest, and the router heard why
                    // (the prefill's own end must not report it again)
                    cancelled.put(id, Boolean.TRUE);
                    h.cancel();
                }
            }
        }
    }

    /**
     * One prefill's KV between the engine thread, which reports each layer as a step stores it, and the transfer
     * thread, which sends each (layer, block) part once it is complete. The blocks stay the engine's until the
     * prefill ends; if it is preempted, {@link #released()} waits for the part being read, and the parts already
     * sent stay valid (the positions are computed again with the same bits) while the rest waits for the new blocks.
     */
    static final class KvStream
    {
        private final int layers;
        private final int positions;
        private final java.util.concurrent.atomic.AtomicIntegerArray stored;
        /**
         * Held while a part is read; fair, so a release (the engine thread) waits for the part in flight only: an
         * unfair lock let the transfer thread take it back for every part it could still send (seen in a test).
         */
        private final java.util.concurrent.locks.ReentrantLock reading =
            new java.util.concurrent.locks.ReentrantLock(true);
        private final Object changed = new Object();
        private volatile int[] blocks = new int[0];
        private volatile Engine.KvRun run;
        private volatile String failure;
        private volatile long prefilledAt;
        private volatile long prefillNanos;
        private long firstSentAt;
        private boolean abandoned;

        KvStream(final int layers, final int positions)
        {
            this.layers = layers;
            this.positions = positions;
            this.stored = new java.util.concurrent.atomic.AtomicIntegerArray(layers);
        }

        /** Engine thread: layer {@code layer} of positions {@code [0, upTo)} is in {@code table}. */
        void stored(final int layer, final int upTo, final int[] table)
        {
            blocks = table; // before the count: a reader that sees the count sees the table
            stored.set(layer, upTo);
            synchronized (changed)
            {
                changed.notifyAll();
            }
        }

        /** Engine thread, before the blocks go back to the pool: waits for a part being read. */
        void released()
        {
            reading.lock();
            try
            {
                for (int l = 0; l < layers; l++)
                {
                    stored.set(l, 0);
                }
                blocks = new int[0];
            }
            finally
            {
                reading.unlock();
            }
        }

        /** Engine thread: the whole KV is in {@code kv}; false if the transfer gave up (the caller frees it). */
        boolean prefilled(final Engine.KvRun kv, final long nanos)
        {
            synchronized (changed)
            {
                if (abandoned)
                {
                    return false;
                }
                blocks = kv.blocks();
                for (int l = 0; l < layers; l++)
                {
                    stored.set(l, positions);
                }
                prefillNanos = nanos;
                prefilledAt = System.nanoTime();
                run = kv;
                changed.notifyAll();
                return true;
            }
        }

        void fail(final String error)
        {
            synchronized (changed)
            {
                failure = error;
                changed.notifyAll();
            }
        }

        String failure()
        {
            return failure;
        }

        long prefilledAt()
        {
            return prefilledAt;
        }

        long prefillNanos()
        {
            return prefillNanos;
        }

        /** When the first part went (transfer thread), 0 before. */
        long firstSentAt()
        {
            return firstSentAt;
        }

        /** Transfer thread, at its end: the run if the prefill ended (the caller frees it), else null and never. */
        Engine.KvRun abandon()
        {
            synchronized (changed)
            {
                abandoned = true;
                return run;
            }
        }

        /** Waits until the prefill stored its first layer (or ended); false if it failed or {@code gone}. */
        boolean awaitStart(final java.util.function.BooleanSupplier gone) throws InterruptedException
        {
            synchronized (changed)
            {
                while (stored.get(0) == 0 && run == null)
                {
                    if (gone.getAsBoolean())
                    {
                        return false;
                    }
                    changed.wait(50);
                }
                return !gone.getAsBoolean();
            }
        }

        /** Waits for the end of the prefill; null if it failed or {@code gone}. */
        Engine.KvRun awaitRun(final java.util.function.BooleanSupplier gone) throws InterruptedException
        {
            synchronized (changed)
            {
                while (run == null)
                {
                    if (gone.getAsBoolean())
                    {
                        return null;
                    }
                    changed.wait(50);
                }
                return run;
            }
        }

        /**
         * Sends every part as attempt 1, each as soon as its layer of its block is stored (layer by layer, block by
         * block within a layer); returns the bytes, or -1 if the prefill failed or {@code gone}.
         */
        long send(final BulkSender sender, final dev.strata.compute.model.KvBlockPool pool, final long id,
            final int skipped, final long timeout, final java.util.function.BooleanSupplier gone,
            final AtomicLong streamed) throws TimeoutException, InterruptedException
        {
            final int bt = pool.blockTokens();
            final int nb = pool.blocksFor(positions) - skipped;
            final long layerBytes = pool.blockBytes() / layers;
            final int[] next = new int[layers];
            int remaining = layers * nb;
            long bytes = 0;
            while (remaining > 0)
            {
                if (gone.getAsBoolean())
                {
                    return -1;
                }
                int sent = 0;
                for (int l = 0; l < layers; l++)
                {
                    while (next[l] < nb)
                    {
                        final int b = skipped + next[l];
                        BEFORE_PART.run();
                        reading.lock();
                        try
                        {
                            final int upTo = stored.get(l);
                            final int[] table = blocks;
                            if (upTo < Math.min((b + 1) * bt, positions) || b >= table.length)
                            {
                                break;
                            }
                            // a bounded wait for back-pressure: the engine may be waiting on this lock
                            final long n = sender.sendPart(id, 1, l * nb + next[l],
                                pool.block(table[b]).asSlice(l * layerBytes, layerBytes),
                                System.nanoTime() + Math.min(timeout, PART_WAIT_NANOS), gone).bytes();
                            bytes += n;
                            if (firstSentAt == 0)
                            {
                                firstSentAt = System.nanoTime();
                            }
                            if (run == null)
                            {
                                streamed.addAndGet(n);
                            }
                        }
                        finally
                        {
                            reading.unlock();
                        }
                        next[l]++;
                        remaining--;
                        sent++;
                    }
                }
                if (sent == 0)
                {
                    synchronized (changed)
                    {
                        changed.wait(20);
                    }
                }
            }
            return bytes;
        }
    }

    private void fail(final long id, final String why)
    {
        LOG.warning(ctx.node + ": request " + id + ": " + why);
        send(router, new Msg.Failed(id, ctx.node, why));
    }

    /**
     * The longest a KV part waits for back-pressure (or for its receiver to connect) while it holds the lock that
     * a preempted prefill's release waits on: 2 s, which a test of that lock lengthens.
     */
    static volatile long PART_WAIT_NANOS = 2_000_000_000L;

    /** Test hook: run on the engine thread after each layer a prefill stores (nothing unless set by a test). */
    static volatile Runnable AFTER_LAYER = () -> { };

    /** Test hook: run on a transfer thread before it looks at the next KV part (nothing unless set by a test). */
    static volatile Runnable BEFORE_PART = () -> { };

    /**
     * Makes every KV transfer of this process wait {@code millis} before each part, outside the lock a preempted
     * prefill's release waits on (tests of a transfer that lags its prefill).
     */
    public static void slowKvParts(final long millis)
    {
        BEFORE_PART = sleeping(millis);
    }

    /** Makes every prefill of this process slower by {@code millis} per layer (tests of the overlap). */
    public static void slowPrefillLayers(final long millis)
    {
        AFTER_LAYER = sleeping(millis);
    }

    /** A test hook that sleeps {@code millis} (nothing for 0 or less). */
    private static Runnable sleeping(final long millis)
    {
        return millis <= 0 ? () -> { } : () ->
        {
            try
            {
                Thread.sleep(millis);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        };
    }

    /** KV bytes this node sent while their prefill was still computing (the overlap). */
    public long kvBytesStreamed()
    {
        return kvBytesStreamed.get();
    }

    /** Test hook: which chunks this node damages on the way out (none unless set by a test). */
    static volatile java.util.function.IntPredicate FAULTS = c -> false;

    /** Damages the chunks a predicate selects on every sender of this process (fault-injection tests). */
    public static void injectChunkFaults(final java.util.function.IntPredicate which)
    {
        FAULTS = which;
    }

    // ---- decode side: reserve, receive, submit (agent thread) ----

    private void onOffer(final Msg.KvOffer o)
    {
        final Publication reply = peer(o.replyChannel(), o.replyStream());
        final String mismatch = !o.version().equals(engine.modelVersion()) ? "model version " + o.version() +
            " is not this node's " + engine.modelVersion() :
            !o.kvType().equals(engine.kvPool().type().name()) || o.blockTokens() != engine.kvPool().blockTokens() ||
                o.blockBytes() != engine.kvPool().blockBytes() ? "KV layout " + o.kvType() + "/" + o.blockTokens() +
                "/" + o.blockBytes() + " is not this node's " + engine.kvPool().type() + "/" +
                engine.kvPool().blockTokens() + "/" + engine.kvPool().blockBytes() : null;
        if (mismatch != null)
        {
            send(reply, new Msg.KvAccept(o.id(), ctx.node, false, false, 0, mismatch));
            return;
        }
        if (imports.containsKey(o.id()))
        {
            return; // a repeated offer while the first is being served
        }
        final int headroom = Math.max(2, engine.stats().running());
        engine.reserve(o.prefix(), headroom).whenComplete((run, error) -> agentTasks.add(() ->
        {
            if (error != null || run == null)
            {
                send(reply, new Msg.KvAccept(o.id(), ctx.node, false, error == null, 0, error != null ?
                    error.toString() : "no room: " + engine.kvPool().available() + " KV blocks free"));
                return;
            }
            final MemorySegment[] parts = layerParts(engine.kvPool(), run.blocks(), run.cachedBlocks(),
                engine.config().layers());
            expect(new Import(o, run, parts, 1, null, 0, System.nanoTime() +
                TimeUnit.MILLISECONDS.toNanos(ctx.transferTimeoutMillis)));
            send(reply, new Msg.KvAccept(o.id(), ctx.node, true, false, run.cachedBlocks(), null));
        }));
    }

    private void onTransferDone(final BulkReceiver.Transfer t)
    {
        final Import imp = imports.get(t.id());
        if (imp == null)
        {
            return;
        }
        final Publication reply = peer(imp.offer().replyChannel(), imp.offer().replyStream());
        kvBytesReceived.addAndGet(t.bytes());
        if (t.ok())
        {
            imports.remove(t.id());
            final Engine.Handle h;
            try
            {
                h = engine.submit(imp.offer().spec().request(), toRouter(t.id()), imp.run());
            }
            catch (final IllegalArgumentException | IllegalStateException e)
            {
                engine.release(imp.run());
                send(reply, new Msg.KvAck(t.id(), ctx.node, t.attempt(), false, e.getMessage()));
                return;
            }
            running.put(t.id(), h);
            requests.incrementAndGet();
            send(reply, new Msg.KvAck(t.id(), ctx.node, t.attempt(), true, null));
            return;
        }
        final String why = t.error() != null ? t.error() : t.corruptChunks() + " of " + t.chunks() +
            " chunks failed their checksum";
        LOG.warning(ctx.node + ": KV of request " + t.id() + " attempt " + t.attempt() + ": " + why);
        if (t.attempt() == 1)
        {
            expect(new Import(imp.offer(), imp.run(), imp.parts(), 2, null, 0, System.nanoTime() +
                TimeUnit.MILLISECONDS.toNanos(ctx.transferTimeoutMillis)));
        }
        else
        {
            imports.remove(t.id());
            engine.release(imp.run());
        }
        send(reply, new Msg.KvAck(t.id(), ctx.node, t.attempt(), false, why));
    }

    /** Registers an import, then the transfer it waits for (which may end at once: every block cached). */
    private void expect(final Import imp)
    {
        final long id = imp.offer().id();
        imports.put(id, imp);
        final BulkReceiver.Transfer t = receiver.expect(id, imp.attempt(), imp.parts());
        imports.computeIfPresent(id, (k, v) -> v == imp ? new Import(imp.offer(), imp.run(), imp.parts(),
            imp.attempt(), t, 0, imp.deadline()) : v);
    }

    private void expireImports(final long now)
    {
        for (final Map.Entry<Long, Import> e : imports.entrySet())
        {
            final Import imp = e.getValue();
            if (imp.transfer() != null && imp.transfer().bytes() != imp.bytesSeen())
            {
                imports.replace(e.getKey(), imp, new Import(imp.offer(), imp.run(), imp.parts(), imp.attempt(),
                    imp.transfer(), imp.transfer().bytes(), now + TimeUnit.MILLISECONDS.toNanos(
                        ctx.transferTimeoutMillis)));
                continue;
            }
            if (now - imp.deadline() > 0 && imports.remove(e.getKey(), imp))
            {
                LOG.warning(ctx.node + ": KV of request " + e.getKey() + " did not arrive in time; blocks freed");
                receiver.forget(e.getKey());
                engine.release(e.getValue().run());
            }
        }
    }

    // ---- sending ----

    private Publication peer(final String channel, final int stream)
    {
        return peers.computeIfAbsent(channel + "|" + stream, k -> ctx.aeron.addPublication(channel, stream));
    }

    /** Offers one message (waiting up to 2 s for back-pressure or a publication still connecting). */
    private void send(final Publication p, final Msg m)
    {
        final String failure = Msg.offer(p, m, closed ? 0 : 2_000);
        if (failure != null)
        {
            LOG.warning(ctx.node + ": could not send " + m.getClass().getSimpleName() + " to " + p.channel() +
                " stream " + p.streamId() + " (" + failure + ")");
        }
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
            agent.join(5_000);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        transfers.shutdownNow();
        for (final Import imp : imports.values())
        {
            engine.release(imp.run());
        }
        imports.clear();
        CloseHelper.quietCloseAll(peers.values());
        CloseHelper.quietCloseAll(router, control, kv);
    }
}
