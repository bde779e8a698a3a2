package dev.strata.compute.stream;

import dev.strata.compute.model.GlobalWeights;
import dev.strata.compute.model.LayerWeights;
import dev.strata.compute.model.ModelConfig;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.tensor.WeightTensor;
import dev.strata.prefetch.AccessTrace;
import dev.strata.prefetch.PrefetchPlanner;
import dev.strata.prefetch.LayerTrace;
import dev.strata.prefetch.PrefetchSettings;
import dev.strata.prefetch.PrefetchStats;
import dev.strata.transport.Transport;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.SystemNanoClock;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * Weights streamed from the parameter service into a node-local memory budget, in four parts: the
 * {@link UnitLayout} (how the version's tensors are cut into units, the unit of caching), the {@link UnitPool}
 * (the budget and its buffers), the {@link PrefetchPlanner} (what to fetch ahead, what to evict first) and the
 * {@link Fetcher} (the agent that owns the connection). This class holds the units' states and ties them
 * together under one lock.
 * <p>
 * {@link #acquire} pins a layer, waiting for it if needed (a demand fetch, served by the block server before any
 * prefetch); then the next layers the planner names are prefetched while the layer computes. When room is
 * needed, the unpinned unit needed farthest ahead is evicted (for a cyclic layer order, Belady's choice); a
 * prefetch never evicts a unit needed sooner than the one it brings. Mixture-of-experts models stream experts
 * one by one when the importer cut their tensors at expert boundaries ({@link #experts}).
 * <p>
 * Several callers may use one source at once (a prefill and a decode worker): each caller's pins are its own,
 * eviction keeps what any caller needs soonest, and a demand fetch that finds the budget full of other callers'
 * pinned units waits for one of them to be released (bounded by the retry time) instead of failing.
 * <p>
 * A failed fetch (service gone, timeout) is retried on a fresh connection (the endpoints are looked up again
 * through the admin API) for a bounded time, then the forward pass gets a clear error; a block outside the
 * pinned version fails at once. Never another version: every request names the pinned {@code model@number}.
 */
public final class StreamingWeightSource implements WeightSource
{
    /**
     * Settings.
     *
     * @param budgetBytes     node memory for weights.
     * @param prefetch        prefetch the predicted next layers (off: demand fetching only).
     * @param maxLookahead    most layers prefetched ahead.
     * @param requestTimeout  wait for one request before retrying it.
     * @param retryFor        keep retrying a fetch this long before failing.
     * @param mode            UDP (own media driver) or IPC (the service's driver on this host).
     * @param localHost       address the service can reach this node at (UDP).
     * @param verifyDigests   re-hash every block with SHA-256 (chunks are always CRC32C-checked).
     * @param expertTraining  a recorded expert trace to train the expert predictor on first, or null.
     */
    public record Options(long budgetBytes, boolean prefetch, int maxLookahead, long requestTimeout, long retryFor,
        BlockChannel.Mode mode, String localHost, boolean verifyDigests, AccessTrace expertTraining)
    {
        public static Options defaults(final long budgetBytes)
        {
            return new Options(budgetBytes, true, 4, TimeUnit.SECONDS.toNanos(5), TimeUnit.SECONDS.toNanos(30),
                BlockChannel.Mode.UDP, "localhost", false, null);
        }

        public Options withPrefetch(final boolean on)
        {
            return new Options(budgetBytes, on, maxLookahead, requestTimeout, retryFor, mode, localHost, verifyDigests,
                expertTraining);
        }

        public Options withMode(final BlockChannel.Mode m)
        {
            return new Options(budgetBytes, prefetch, maxLookahead, requestTimeout, retryFor, m, localHost, verifyDigests,
                expertTraining);
        }

        public Options withRetryFor(final long nanos)
        {
            return new Options(budgetBytes, prefetch, maxLookahead, requestTimeout, nanos, mode, localHost, verifyDigests,
                expertTraining);
        }

        /** Trains the expert predictor on a recorded trace (see {@link #expertTrace()}) before the first token. */
        public Options withExpertTraining(final AccessTrace trace)
        {
            return new Options(budgetBytes, prefetch, maxLookahead, requestTimeout, retryFor, mode, localHost,
                verifyDigests, trace);
        }
    }

    private final RemoteModel model;
    private final Options options;
    private final ModelConfig config;
    private final UnitLayout layout;
    private final int layers;
    private final int experts; // streamed one by one; 0 when experts are part of the layer units
    private final Slot[] slots;
    private final UnitPool pool;
    private final PrefetchPlanner planner;
    private final PrefetchStats stats;
    private final Fetcher fetcher;
    private final AgentRunner fetcherRunner;
    /** The fetcher's queues, guarded by this source's lock. */
    private final FetchQueues queues;
    /** Expert units each caller pinned, per layer: key {@code callerId << 16 | layer}. */
    private final Map<Long, List<Slot>> pinnedExperts = new HashMap<>();
    private final AtomicLong expertGuesses = new AtomicLong();
    private final AtomicLong fetcherErrors = new AtomicLong();
    private static final System.Logger LOG = System.getLogger(StreamingWeightSource.class.getName());
    private boolean closed;
    /** The settings an operator pushed last (through the service), applied at once. */
    private volatile PrefetchSettings settings = PrefetchSettings.DEFAULTS;
    /** The node's own budget, which a pushed budget of 0 returns to. */
    private final long ownBudget;
    /** Records layer accesses for a what-if replay, or null. */
    private volatile LayerTrace.Recorder recorder;

    public StreamingWeightSource(final RemoteModel model, final Options options, final PrefetchStats stats)
        throws IOException
    {
        this(model, options, stats, null);
    }

    /**
     * As above, over a transport shared with other roles of the process (used, never closed; in IPC mode it must
     * be on the service's media driver), or its own when {@code transport} is null.
     */
    public StreamingWeightSource(final RemoteModel model, final Options options, final PrefetchStats stats,
        final Transport transport) throws IOException
    {
        this.model = model;
        this.options = options;
        this.config = model.config();
        this.layout = UnitLayout.of(model);
        this.layers = layout.layers();
        this.experts = layout.experts();
        this.stats = stats;
        if (stats.layers() == 0)
        {
            stats.units(layers, experts);
        }
        this.ownBudget = options.budgetBytes();
        this.slots = new Slot[layout.size()];
        for (int i = 0; i < slots.length; i++)
        {
            slots[i] = new Slot(layout.unit(i));
        }
        this.planner = new PrefetchPlanner(layers, experts, experts > 0 ? config.expertsUsed() : 0,
            options.maxLookahead());
        if (options.expertTraining() != null)
        {
            if (experts == 0)
            {
                throw new IllegalArgumentException(model.pinned() + " streams no experts one by one: an expert trace " +
                    "does not apply");
            }
            planner.train(options.expertTraining());
        }
        final long minimum = layout.minimumBudget();
        if (options.budgetBytes() < minimum)
        {
            throw new IllegalArgumentException("a memory budget of " + options.budgetBytes() + " bytes is too small " +
                "for " + model.pinned() + ": it needs at least " + minimum + " (the global tensors, " +
                layout.globals().bytes() + ", plus the largest layer, " + layout.largestLayer() +
                (experts > 0 ? ", plus all " + experts + " experts of a layer, " + experts * layout.largestExpert() :
                    "") + ")");
        }
        this.pool = new UnitPool(options.budgetBytes(), options.mode() == BlockChannel.Mode.IPC &&
            BlockChannel.PLACEMENT && dev.strata.transport.bulk.SharedRegion.available());
        this.queues = new FetchQueues(this, pool, stats, layout, model, experts > 0);
        final BlockChannel channel = new BlockChannel(model.admin(), options.mode(), options.localHost(),
            options.verifyDigests(), transport);
        this.fetcher = new Fetcher(queues, channel, model.pinned(), options.requestTimeout(), options.retryFor(),
            new SystemNanoClock());
        // parks up to 1 ms when idle, and is unparked by every schedule(): an idle fetcher takes no core from the
        // forward pass, and a demand fetch does not wait for the park to end
        this.fetcherRunner = new AgentRunner(new BackoffIdleStrategy(100, 10, 1_000, 1_000_000),
            this::onFetcherError, null, fetcher);
        AgentRunner.startOnThread(fetcherRunner);
        try
        {
            final Slot g = slots[layers];
            final CompletableFuture<Void> f;
            synchronized (this)
            {
                g.pins = 1; // resident for good
                schedule(g, true);
                f = g.ready;
            }
            await(g, f);
        }
        catch (final RuntimeException | IOException ex)
        {
            close();
            throw ex;
        }
    }

    /** The fetcher's error handler: a failure of the agent itself (a bug), counted and logged, never silent. */
    private void onFetcherError(final Throwable ex)
    {
        fetcherErrors.incrementAndGet();
        LOG.log(System.Logger.Level.ERROR, "fetcher error for " + model.pinned(), ex);
    }

    /** Failures of the fetcher agent itself (not fetch failures, which go to the caller that waits). */
    public long fetcherErrors()
    {
        return fetcherErrors.get();
    }

    /** Whether experts are fetched one by one (a mixture of experts cut at expert boundaries). */
    public boolean streamsExperts()
    {
        return experts > 0;
    }

    @Override
    public ModelConfig config()
    {
        return config;
    }

    @Override
    public GlobalWeights globals()
    {
        return slots[layers].globals;
    }

    public RemoteModel model()
    {
        return model;
    }

    public PrefetchStats stats()
    {
        return stats;
    }

    /** Bytes of unit buffers now (resident, in flight and pooled). */
    public synchronized long usedBytes()
    {
        return pool.usedBytes();
    }

    /** The most bytes ever held at once: never more than the budget. */
    public synchronized long peakBytes()
    {
        return pool.peakBytes();
    }

    private static long caller()
    {
        return Thread.currentThread().threadId();
    }

    @Override
    public LayerWeights acquire(final int layer)
    {
        synchronized (this)
        {
            planner.onAcquire(caller(), layer, System.nanoTime());
        }
        final Slot s = slots[layer];
        pin(s);
        if (options.prefetch() && settings.predictor() != PrefetchSettings.Kind.NONE)
        {
            prefetchAfter(layer);
        }
        return s.layer;
    }

    @Override
    public ExpertWeights experts(final int layer, final int[] chosen)
    {
        if (experts == 0)
        {
            throw new IllegalStateException("experts are part of the layer units here");
        }
        final WeightTensor[] gate = new WeightTensor[experts];
        final WeightTensor[] up = new WeightTensor[experts];
        final WeightTensor[] down = new WeightTensor[experts];
        final long key = caller() << 16 | layer;
        for (final int e : chosen)
        {
            final Slot s = slots[layout.expertUnit(layer, e).index()];
            synchronized (this)
            {
                planner.onRouted(layer, e);
            }
            pin(s);
            synchronized (this)
            {
                pinnedExperts.computeIfAbsent(key, k -> new ArrayList<>()).add(s);
            }
            gate[e] = s.expertWeights[0];
            up[e] = s.expertWeights[1];
            down[e] = s.expertWeights[2];
        }
        cancelUnusedGuesses(layer, chosen);
        if (options.prefetch() && settings.predictor() == PrefetchSettings.Kind.LEARNED)
        {
            prefetchExperts(layer);
        }
        return new ExpertWeights(gate, up, down);
    }

    /**
     * Layer {@code layer} has routed: guessed experts of it the router did not pick will not be needed before the
     * next token; drop them, their room goes back to the budget. A guess still queued is dropped here; a guess in
     * flight is handed to the fetcher, which cancels its requests at the service (so it no longer takes the link,
     * nor the CPU of both ends, from the experts that are needed) and frees its buffer.
     */
    private synchronized void cancelUnusedGuesses(final int layer, final int[] chosen)
    {
        for (int e = 0; e < experts; e++)
        {
            final Slot s = slots[layout.expertUnit(layer, e).index()];
            boolean picked = false;
            for (final int c : chosen)
            {
                picked |= c == e;
            }
            if (picked || !s.prefetched || s.demand)
            {
                continue;
            }
            if (s.state == Slot.State.QUEUED && queues.prefetch.remove(s))
            {
                pool.recycle(s.buffer);
                s.buffer = null;
                s.state = Slot.State.ABSENT;
                s.ready.completeExceptionally(new CancellationException("unused guess"));
                stats.cancelled(false);
            }
            else if (s.state == Slot.State.FETCHING && !queues.cancels.contains(s))
            {
                queues.cancels.addLast(s);
                wakeFetcher();
            }
        }
    }

    /** Pins a unit, fetching it (demand) or waiting for its prefetch if needed. */
    private void pin(final Slot s)
    {
        final long start = System.nanoTime();
        final CompletableFuture<Void> wait;
        final boolean prefetchInFlight;
        synchronized (this)
        {
            while (true)
            {
                if (s.state == Slot.State.RESIDENT)
                {
                    s.pins++;
                    stats.hit(s.prefetched && !s.used);
                    s.used = true;
                    accessed(s, start, LayerTrace.HIT, 0);
                    return;
                }
                if (s.state == Slot.State.QUEUED || s.state == Slot.State.FETCHING)
                {
                    s.pins++;
                    prefetchInFlight = s.prefetched;
                    if (s.state == Slot.State.QUEUED && !s.demand)
                    {
                        queues.prefetch.remove(s);
                        queues.demand.addFirst(s); // needed now: ahead of every prefetch
                        wakeFetcher();
                    }
                    s.demand = true;
                    wait = s.ready;
                    break;
                }
                if (makeRoom(s, true))
                {
                    s.pins++;
                    prefetchInFlight = false;
                    schedule(s, true);
                    wait = s.ready;
                    break;
                }
                waitForRoom(s, start);
            }
        }
        try
        {
            await(s, wait);
        }
        catch (final IOException ex)
        {
            synchronized (this)
            {
                s.pins--;
            }
            throw new UncheckedIOException(ex);
        }
        final long waited = System.nanoTime() - start;
        synchronized (this)
        {
            s.used = true;
            if (prefetchInFlight)
            {
                stats.late(waited);
                planner.late();
            }
            else
            {
                stats.demand(waited);
            }
            accessed(s, start, prefetchInFlight ? LayerTrace.LATE : LayerTrace.DEMAND, waited);
        }
    }

    /** Counts an access per unit, and records it when a trace is being recorded. */
    private void accessed(final Slot s, final long at, final byte outcome, final long waited)
    {
        stats.unitAccess(s.unit.layerOf(), s.unit.expert());
        final LayerTrace.Recorder r = recorder;
        if (r != null && s.unit.expert() < 0)
        {
            r.access(at, s.unit.layerOf(), outcome, waited);
        }
    }

    /**
     * The budget is full of pinned and in-flight units: when other callers hold pins, wait for a release (bounded
     * by the retry time); alone, the budget cannot work. Holds the lock.
     */
    private void waitForRoom(final Slot s, final long start)
    {
        boolean othersPinned = false;
        for (final Slot o : slots)
        {
            othersPinned |= o != s && o.unit.index() != layers && (o.pins > 0 || o.state == Slot.State.FETCHING ||
                o.state == Slot.State.QUEUED);
        }
        final long left = options.retryFor() - (System.nanoTime() - start);
        if (!othersPinned || left <= 0 || closed)
        {
            throw new IllegalStateException("memory budget of " + options.budgetBytes() + " bytes cannot hold " +
                layout.describe(s.unit) + " (" + s.bytes() + " bytes) next to the pinned and in-flight units (" +
                pool.usedBytes() + " bytes)");
        }
        try
        {
            TimeUnit.NANOSECONDS.timedWait(this, Math.min(left, TimeUnit.MILLISECONDS.toNanos(100)));
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted waiting for room for " + layout.describe(s.unit));
        }
    }

    @Override
    public void release(final int layer)
    {
        synchronized (this)
        {
            slots[layer].pins--;
            final List<Slot> mine = pinnedExperts.remove(caller() << 16 | layer);
            if (mine != null)
            {
                for (final Slot e : mine)
                {
                    e.pins--;
                }
            }
            notifyAll(); // a demand fetch of another caller may be waiting for room
        }
        if (layer == layers - 1)
        {
            stats.token();
        }
    }

    private void await(final Slot s, final CompletableFuture<Void> f) throws IOException
    {
        try
        {
            // the fetcher gives up after retryFor; the margin covers one more request
            f.get(options.retryFor() + 2 * options.requestTimeout(), TimeUnit.NANOSECONDS);
        }
        catch (final ExecutionException ex)
        {
            throw ex.getCause() instanceof IOException io ? io : new IOException(ex.getCause());
        }
        catch (final TimeoutException ex)
        {
            throw new IOException("timed out waiting for " + layout.describe(s.unit) + " of " + model.pinned());
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted waiting for " + layout.describe(s.unit));
        }
    }

    private synchronized void prefetchAfter(final int layer)
    {
        // beyond what this node will fetch next, tell the service which layer comes after, so that it moves it
        // from SSD or object storage into its memory tier before the node asks
        final Slot ahead = slots[planner.hintAfter(layer)];
        if (ahead.state == Slot.State.ABSENT && !queues.hints.contains(ahead))
        {
            queues.hints.addLast(ahead);
            wakeFetcher();
        }
        boolean first = true;
        for (final int next : planner.layersAfter(layer))
        {
            final Slot s = slots[next];
            if (s.state != Slot.State.ABSENT)
            {
                first = false;
                continue;
            }
            // the next layer may take the room of one needed later; deeper look-ahead only uses free room: in a
            // budget smaller than the model every extra layer in flight is a layer less kept, one more fetch per
            // token
            if (first ? !makeRoom(s, false) : !pool.fits(s.bytes()))
            {
                break;
            }
            first = false;
            s.prefetched = true;
            s.used = false;
            s.neededBy = System.nanoTime() + planner.neededInNanos(layer, next);
            schedule(s, false);
            stats.prefetchIssued();
        }
    }

    /**
     * After layer {@code layer} routed: prefetch the experts of the next layer the planner expects, into free room
     * only: these are guesses, and evicting a held unit for a wrong guess costs a fetch later.
     */
    private synchronized void prefetchExperts(final int layer)
    {
        final int next = (layer + 1) % layers;
        for (final int e : planner.expertGuesses(layer))
        {
            final Slot s = slots[layout.expertUnit(next, e).index()];
            if (s.state != Slot.State.ABSENT)
            {
                continue;
            }
            if (!pool.fits(s.bytes()) && !pool.hasFree(s.bytes()))
            {
                break;
            }
            s.prefetched = true;
            s.used = false;
            s.neededBy = System.nanoTime() + planner.layerNanos(); // the next layer
            schedule(s, false);
            stats.prefetchIssued();
            expertGuesses.incrementAndGet();
        }
    }

    /** Experts of a next layer fetched on a guess of the expert predictor. */
    public long expertGuessesIssued()
    {
        return expertGuesses.get();
    }

    /**
     * Frees room for {@code target}; a prefetch only evicts units needed later than it. False when nothing more
     * can be evicted (everything else is pinned or in flight). Holds the lock.
     */
    private boolean makeRoom(final Slot target, final boolean demand)
    {
        if (pool.hasFree(target.bytes()))
        {
            return true; // a buffer of this size is free: no growth
        }
        while (!pool.fits(target.bytes()))
        {
            if (pool.releaseOnePooled())
            {
                continue;
            }
            Slot victim = null;
            long farthest = -1;
            for (final Slot v : slots)
            {
                if (v.state == Slot.State.RESIDENT && v.pins == 0 && v != target && v.unit.index() != layers)
                {
                    final long d = planner.distance(v.unit.layerOf(), v.unit.expert());
                    if (d > farthest)
                    {
                        farthest = d;
                        victim = v;
                    }
                }
            }
            if (victim == null)
            {
                return false;
            }
            if (!demand && farthest <= planner.distance(target.unit.layerOf(), target.unit.expert()))
            {
                return false;
            }
            evict(victim);
            if (victim.bytes() == target.bytes())
            {
                return true; // its buffer is reused
            }
        }
        return true;
    }

    /** Holds the lock. */
    private void evict(final Slot v)
    {
        if (v.prefetched && !v.used)
        {
            stats.wasted(v.bytes());
            planner.wasted();
        }
        v.layer = null;
        v.expertWeights = null;
        pool.recycle(v.buffer);
        v.buffer = null;
        v.state = Slot.State.ABSENT;
    }

    /** Gives the unit a buffer and queues its fetch. Holds the lock. */
    private void schedule(final Slot s, final boolean demand)
    {
        s.scheduledAt = System.nanoTime();
        s.buffer = pool.take(s.bytes());
        s.state = Slot.State.QUEUED;
        s.demand = demand;
        s.ready = new CompletableFuture<>();
        s.retryUntil = System.nanoTime() + options.retryFor();
        (demand ? queues.demand : queues.prefetch).addLast(s);
        wakeFetcher();
    }

    private void wakeFetcher()
    {
        final Thread t = fetcherRunner == null ? null : fetcherRunner.thread();
        if (t != null)
        {
            LockSupport.unpark(t);
        }
    }

    /**
     * The expert units this source used, in order, as a trace another node can train its predictor on before its
     * first token ({@link Options#withExpertTraining}); null for a model whose experts are not streamed one by one.
     */
    public synchronized AccessTrace expertTrace()
    {
        return experts > 0 ? planner.expertTrace() : null;
    }

    /**
     * Applies settings an operator pushed, at once: the look-ahead (fixed, or adaptive again), the predictor, and
     * the memory budget (a smaller one evicts unpinned units until it holds; 0 returns to the node's own).
     *
     * @throws IllegalArgumentException when the budget is below what the model needs, naming that figure; nothing
     *                                  is changed then.
     */
    public synchronized void apply(final PrefetchSettings next)
    {
        final long budget = next.nodeBudgetBytes() == 0 ? ownBudget : next.nodeBudgetBytes();
        if (budget < layout.minimumBudget())
        {
            throw new IllegalArgumentException("invalid nodeBudgetBytes=" + budget + " for " + model.pinned() +
                ": it needs at least " + layout.minimumBudget());
        }
        planner.fixLookahead(next.lookahead());
        pool.budgetBytes(budget);
        while (pool.usedBytes() > budget)
        {
            if (pool.releaseOnePooled())
            {
                continue;
            }
            Slot victim = null;
            long farthest = -1;
            for (final Slot v : slots)
            {
                if (v.state == Slot.State.RESIDENT && v.pins == 0 && v.unit.index() != layers)
                {
                    final long d = planner.distance(v.unit.layerOf(), v.unit.expert());
                    if (d > farthest)
                    {
                        farthest = d;
                        victim = v;
                    }
                }
            }
            if (victim == null)
            {
                break; // the rest is pinned or in flight: given back as it is released
            }
            evict(victim);
        }
        settings = next;
    }

    /** The settings applied last. */
    public PrefetchSettings settings()
    {
        return settings;
    }

    /** What the node's reporter sends: look-ahead, budget, bytes held and bytes held holding no unit. */
    public record Gauges(int lookahead, long budgetBytes, long usedBytes, long unusableBytes)
    {
    }

    public synchronized Gauges gauges()
    {
        return new Gauges(planner.lookahead(), pool.budgetBytes(), pool.usedBytes(), pool.pooledBytes());
    }

    /** Starts recording every layer access (at most {@code max}) for {@link #layerTrace}. */
    public void recordTrace(final int max)
    {
        recorder = new LayerTrace.Recorder(max);
    }

    /**
     * The layer accesses recorded since {@link #recordTrace}, with the settings they ran under; the link's bandwidth
     * is {@code linkBytesPerSecond} (the caller's measurement or assumption; 0 or less: 1 GB/s). Null when nothing is
     * recorded.
     */
    public synchronized LayerTrace layerTrace(final long linkBytesPerSecond)
    {
        final LayerTrace.Recorder r = recorder;
        if (r == null)
        {
            return null;
        }
        final long[] sizes = new long[layers];
        for (int l = 0; l < layers; l++)
        {
            sizes[l] = layout.unit(l).bytes();
        }
        return r.trace(new LayerTrace.Settings(layout.globals().bytes(), sizes, pool.budgetBytes(),
            planner.fixedLookahead(), options.maxLookahead(),
            options.prefetch() && settings.predictor() != PrefetchSettings.Kind.NONE,
            linkBytesPerSecond > 0 ? linkBytesPerSecond : 1_000_000_000L));
    }

    @Override
    public void tokensSampled(final int count)
    {
        stats.sampled(count);
    }

    /** Prefetch hints sent to the service. */
    public long hintsSent()
    {
        return fetcher.hintsSent();
    }

    @Override
    public void close()
    {
        synchronized (this)
        {
            closed = true;
            notifyAll();
        }
        fetcherRunner.close(); // stops the agent; its onClose closes the connection
        synchronized (this)
        {
            for (final Slot s : slots)
            {
                s.buffer = null;
                s.state = Slot.State.ABSENT;
            }
            pool.close();
        }
    }
}
