package dev.strata.compute.stream;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.model.GlobalWeights;
import dev.strata.compute.model.LayerWeights;
import dev.strata.compute.model.ModelConfig;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.model.WeightViews;
import dev.strata.paramclient.BlockClient;
import dev.strata.paramclient.Manifest;
import dev.strata.prefetch.AccessTrace;
import dev.strata.prefetch.CyclicOrderPredictor;
import dev.strata.prefetch.Predictor;
import dev.strata.prefetch.PrefetchStats;
import dev.strata.prefetch.TransitionPredictor;
import dev.strata.compute.tensor.WeightTensor;
import dev.strata.transport.BlockId;
import dev.strata.transport.sbe.Status;
import org.agrona.collections.IntArrayList;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.LockSupport;

/**
 * Weights streamed from the parameter service into a node-local memory budget. The unit of caching is a layer
 * (all its tensors in one off-heap buffer, blocks written into it straight from Aeron) plus one unit for the
 * global tensors (embedding, final norm, classifier), which stays resident. The budget counts every unit
 * buffer, resident or in flight, and is never exceeded: the smallest workable budget is the globals plus the
 * largest layer.
 * <p>
 * {@link #acquire} pins a layer, waiting for it if needed (a demand fetch, served by the block server before any
 * prefetch); then the next layers the {@link Predictor} names are prefetched while the layer computes. The
 * look-ahead grows when a prefetch arrives late and shrinks when prefetched layers are evicted unused. When
 * room is needed, the unpinned layer whose next use is farthest away is evicted (for a cyclic layer order,
 * Belady's choice); a prefetch never evicts a layer needed sooner than the one it brings.
 * <p>
 * Mixture-of-experts models stream experts one by one: a layer's unit then holds attention, norms and router,
 * and each expert is a unit of its own, fetched when the router picks it ({@link #experts}) and prefetched for the
 * next layer from a {@link TransitionPredictor} learned from the routing trace (which experts follow which);
 * eviction ranks a layer's experts by how often they were used. This needs the expert tensors cut at expert
 * boundaries (the importer does); otherwise whole layers are the units.
 * <p>
 * Fetches run on one thread that owns the Aeron client. A failed fetch (service gone, timeout) is retried on a
 * fresh connection (the endpoints are looked up again through the admin API) for a bounded time, then the
 * forward pass gets a clear error; a block outside the pinned version fails at once. Never another version:
 * every request names the pinned {@code model@number}.
 */
public final class StreamingWeightSource implements WeightSource
{
    private static final long ALIGN = 64;
    /** Prefetch bytes in flight at most (at least one unit always goes): bounds what a wrong guess can cost. */
    private static final long MAX_PREFETCH_INFLIGHT_BYTES = 64L << 20;

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

    private enum State
    {
        ABSENT, QUEUED, FETCHING, RESIDENT
    }

    /** A layer core (or whole layer), the globals, or one expert of a layer, and its buffer. */
    private final class Unit
    {
        final int index;
        final int layerOf;   // the layer it belongs to (layers for the globals)
        final int expert;    // -1 unless an expert unit
        WeightTensor[] expertWeights;
        final List<BlockId> blocks = new ArrayList<>();
        final List<Long> blockOffsets = new ArrayList<>();
        final Map<String, long[]> tensorSpans = new HashMap<>(); // name -> {offset, length}
        final long bytes;
        State state = State.ABSENT;
        Arena arena;
        MemorySegment buffer;
        int pins;
        boolean prefetched;
        boolean used;
        boolean demand;
        /** When this unit is expected to be needed ({@link System#nanoTime}): the service serves earliest first. */
        long neededBy;
        long retryUntil;
        CompletableFuture<Void> ready;
        LayerWeights layer;
        GlobalWeights globals;

        /** An expert unit: the slices of expert {@code e} in the three expert tensors of layer {@code l}. */
        Unit(final int index, final int l, final int e)
        {
            this.index = index;
            this.layerOf = l;
            this.expert = e;
            long offset = 0;
            for (final String name : WeightViews.expertTensorNames(l))
            {
                final Manifest.Tensor t = model.tensor(name);
                final long per = t.byteSize() / config.experts();
                final long from = e * per;
                long at = 0;
                final long start = offset;
                for (final BlockId id : t.blocks())
                {
                    if (at >= from && at < from + per)
                    {
                        blocks.add(id);
                        blockOffsets.add(offset + at - from);
                    }
                    at += id.length();
                }
                tensorSpans.put(name, new long[]{start, per});
                offset = (start + per + ALIGN - 1) / ALIGN * ALIGN;
            }
            this.bytes = Math.max(ALIGN, offset);
        }

        Unit(final int index, final String[] names)
        {
            this.index = index;
            this.layerOf = Math.min(index, layers);
            this.expert = -1;
            long offset = 0;
            for (final String name : names)
            {
                final Manifest.Tensor t = model.tensor(name);
                if (t == null)
                {
                    throw new IllegalArgumentException(model.pinned() + " has no tensor " + name);
                }
                tensorSpans.put(name, new long[]{offset, t.byteSize()});
                long at = offset;
                for (final BlockId id : t.blocks())
                {
                    blocks.add(id);
                    blockOffsets.add(at);
                    at += id.length();
                }
                offset = (at + ALIGN - 1) / ALIGN * ALIGN;
            }
            this.bytes = Math.max(ALIGN, offset);
        }

        String describe()
        {
            return expert >= 0 ? "expert " + expert + " of layer " + layerOf :
                index == layers ? "the global tensors" : "layer " + index;
        }
    }

    private final RemoteModel model;
    private final Options options;
    private final ModelConfig config;
    private final int layers;
    private final Unit[] units;
    private final Predictor predictor;
    private final boolean expertUnits;
    private final int experts;
    private final TransitionPredictor expertPredictor; // over expert units l * experts + e
    /** The expert units used so far, in order (the first MAX_TRACE of them), for {@link #expertTrace()}. */
    private final IntArrayList expertTrace = new IntArrayList();
    private static final int MAX_TRACE = 1 << 22;
    private long expertGuesses;
    private final long[][] expertUse;                   // [layer][expert] how often routed (decayed)
    private final List<List<Unit>> pinnedExperts = new ArrayList<>();
    private int lastExpertUnit = -1;
    private final PrefetchStats stats;
    private final BlockChannel channel;
    private final Thread fetcher;
    private final ArrayDeque<Unit> demandQueue = new ArrayDeque<>();
    private final ArrayDeque<Unit> prefetchQueue = new ArrayDeque<>();
    /** Units to announce to the service (a {@code PrefetchHint}: promote toward its memory tier), sent by the fetcher. */
    private final ArrayDeque<Unit> hintQueue = new ArrayDeque<>();
    /** Guesses in flight that turned out wrong: the fetcher cancels their requests and frees their room. */
    private final ArrayDeque<Unit> cancelQueue = new ArrayDeque<>();
    /** Time from one layer's acquire to the next (moving average): how far ahead a unit is needed. */
    private long layerNanos = 1_000_000L;
    private long lastAcquire;
    private volatile long hintsSent; // written by the fetcher only
    private volatile boolean closed;
    /**
     * Buffers of evicted units kept for reuse, by size (a transformer's layers, and its experts, are all the same
     * size): a fresh allocation is zero-filled and page-faulted in, which cost more than the transfer itself.
     * Pooled buffers count in {@link #usedBytes}, so the budget bounds what the node really holds.
     */
    private final Map<Long, ArrayDeque<Arena>> pool = new HashMap<>();
    private final Map<Arena, MemorySegment> pooledBuffers = new HashMap<>();
    private long usedBytes;
    private long peakBytes;
    private int lookahead = 1;
    private int current;

    public StreamingWeightSource(final RemoteModel model, final Options options, final PrefetchStats stats)
        throws IOException
    {
        this.model = model;
        this.options = options;
        this.config = model.config();
        this.layers = config.layers();
        this.stats = stats;
        this.predictor = new CyclicOrderPredictor(layers);
        this.experts = config.experts();
        this.expertUnits = config.moe() && expertAligned(model, config);
        this.units = new Unit[layers + 1 + (expertUnits ? layers * experts : 0)];
        for (int l = 0; l < layers; l++)
        {
            units[l] = new Unit(l, WeightViews.layerTensorNames(config, l, !expertUnits));
            pinnedExperts.add(new ArrayList<>());
        }
        units[layers] = new Unit(layers, WeightViews.globalTensorNames(model.tensor("output.weight") != null));
        long largest = 0;
        long largestExpert = 0;
        for (int l = 0; l < layers; l++)
        {
            largest = Math.max(largest, units[l].bytes);
        }
        if (expertUnits)
        {
            for (int l = 0; l < layers; l++)
            {
                for (int e = 0; e < experts; e++)
                {
                    final Unit u = new Unit(layers + 1 + l * experts + e, l, e);
                    units[u.index] = u;
                    largestExpert = Math.max(largestExpert, u.bytes);
                }
            }
        }
        this.expertPredictor = expertUnits ? new TransitionPredictor(layers * experts) : null;
        if (options.expertTraining() != null)
        {
            if (!expertUnits)
            {
                throw new IllegalArgumentException(model.pinned() + " streams no experts one by one: an expert trace " +
                    "does not apply");
            }
            expertPredictor.train(options.expertTraining());
        }
        this.expertUse = new long[layers][Math.max(1, experts)];
        // a layer, plus (streaming experts) every expert a batch may route to at once
        final long minimum = units[layers].bytes + largest + (expertUnits ? experts * largestExpert : 0);
        if (options.budgetBytes() < minimum)
        {
            throw new IllegalArgumentException("a memory budget of " + options.budgetBytes() + " bytes is too small " +
                "for " + model.pinned() + ": it needs at least " + minimum + " (the global tensors, " +
                units[layers].bytes + ", plus the largest layer, " + largest +
                (expertUnits ? ", plus all " + experts + " experts of a layer, " + experts * largestExpert : "") + ")");
        }
        this.channel = new BlockChannel(model.admin(), options.mode(), options.localHost(), options.verifyDigests());
        this.fetcher = Thread.ofPlatform().daemon().name("strata-fetcher").start(this::fetchLoop);
        try
        {
            final Unit g = units[layers];
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

    /** Whether every expert tensor's blocks start and end at expert boundaries (so experts can be fetched alone). */
    private static boolean expertAligned(final RemoteModel model, final ModelConfig config)
    {
        for (int l = 0; l < config.layers(); l++)
        {
            for (final String name : WeightViews.expertTensorNames(l))
            {
                final Manifest.Tensor t = model.tensor(name);
                if (t == null)
                {
                    return false;
                }
                final long per = t.byteSize() / config.experts();
                long at = 0;
                for (final BlockId id : t.blocks())
                {
                    final long end = at + id.length();
                    if (at / per != (end - 1) / per)
                    {
                        return false; // this block straddles two experts
                    }
                    at = end;
                }
            }
        }
        return true;
    }

    /** Whether experts are fetched one by one (a mixture of experts cut at expert boundaries). */
    public boolean streamsExperts()
    {
        return expertUnits;
    }

    @Override
    public ModelConfig config()
    {
        return config;
    }

    @Override
    public GlobalWeights globals()
    {
        return units[layers].globals;
    }

    public RemoteModel model()
    {
        return model;
    }

    public PrefetchStats stats()
    {
        return stats;
    }

    /** Bytes of unit buffers now (resident and in flight). */
    public synchronized long usedBytes()
    {
        return usedBytes;
    }

    /** The most bytes ever held at once: never more than the budget. */
    public synchronized long peakBytes()
    {
        return peakBytes;
    }

    @Override
    public LayerWeights acquire(final int layer)
    {
        synchronized (this)
        {
            current = layer;
            predictor.observe(layer);
            final long now = System.nanoTime();
            if (lastAcquire != 0 && now - lastAcquire < 1_000_000_000L) // not across an idle gap between requests
            {
                layerNanos += (now - lastAcquire - layerNanos) / 8;
            }
            lastAcquire = now;
        }
        final Unit u = units[layer];
        pin(u);
        if (options.prefetch())
        {
            prefetchAfter(layer);
        }
        return u.layer;
    }

    @Override
    public ExpertWeights experts(final int layer, final int[] chosen)
    {
        if (!expertUnits)
        {
            throw new IllegalStateException("experts are part of the layer units here");
        }
        final WeightTensor[] gate = new WeightTensor[experts];
        final WeightTensor[] up = new WeightTensor[experts];
        final WeightTensor[] down = new WeightTensor[experts];
        for (final int e : chosen)
        {
            final Unit u = units[layers + 1 + layer * experts + e];
            synchronized (this)
            {
                expertPredictor.observe(u.index - layers - 1);
                if (expertTrace.size() < MAX_TRACE)
                {
                    expertTrace.addInt(u.index - layers - 1);
                }
                expertUse[layer][e]++;
                lastExpertUnit = u.index - layers - 1;
                pinnedExperts.get(layer).add(u);
            }
            pin(u);
            gate[e] = u.expertWeights[0];
            up[e] = u.expertWeights[1];
            down[e] = u.expertWeights[2];
        }
        cancelUnusedGuesses(layer, chosen);
        if (options.prefetch())
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
    private void cancelUnusedGuesses(final int layer, final int[] chosen)
    {
        synchronized (this)
        {
            for (int e = 0; e < experts; e++)
            {
                final Unit u = units[layers + 1 + layer * experts + e];
                boolean picked = false;
                for (final int c : chosen)
                {
                    picked |= c == e;
                }
                if (picked || !u.prefetched || u.demand)
                {
                    continue;
                }
                if (u.state == State.QUEUED && prefetchQueue.remove(u))
                {
                    recycle(u);
                    u.state = State.ABSENT;
                    u.ready.completeExceptionally(new java.util.concurrent.CancellationException("unused guess"));
                    stats.cancelled(false);
                }
                else if (u.state == State.FETCHING && !cancelQueue.contains(u))
                {
                    cancelQueue.addLast(u);
                    LockSupport.unpark(fetcher);
                }
            }
        }
    }

    /** Pins a unit, fetching it (demand) or waiting for its prefetch if needed. */
    private void pin(final Unit u)
    {
        final long start = System.nanoTime();
        final CompletableFuture<Void> wait;
        final boolean prefetchInFlight;
        synchronized (this)
        {
            u.pins++;
            switch (u.state)
            {
                case RESIDENT ->
                {
                    stats.hit(u.prefetched && !u.used);
                    u.used = true;
                    wait = null;
                    prefetchInFlight = false;
                }
                case QUEUED, FETCHING ->
                {
                    prefetchInFlight = u.prefetched;
                    if (u.state == State.QUEUED && !u.demand)
                    {
                        prefetchQueue.remove(u);
                        demandQueue.addFirst(u); // needed now: ahead of every prefetch
                    }
                    u.demand = true;
                    wait = u.ready;
                }
                default ->
                {
                    prefetchInFlight = false;
                    try
                    {
                        makeRoom(u, true);
                    }
                    catch (final RuntimeException ex)
                    {
                        u.pins--;
                        throw ex;
                    }
                    schedule(u, true);
                    wait = u.ready;
                }
            }
        }
        if (wait != null)
        {
            try
            {
                await(u, wait);
            }
            catch (final IOException ex)
            {
                synchronized (this)
                {
                    u.pins--;
                }
                throw new UncheckedIOException(ex);
            }
            final long waited = System.nanoTime() - start;
            synchronized (this)
            {
                u.used = true;
                if (prefetchInFlight)
                {
                    stats.late(waited);
                    lookahead = Math.min(options.maxLookahead(), lookahead + 1);
                }
                else
                {
                    stats.demand(waited);
                }
            }
        }
    }

    @Override
    public void release(final int layer)
    {
        synchronized (this)
        {
            units[layer].pins--;
            for (final Unit e : pinnedExperts.get(layer))
            {
                e.pins--;
            }
            pinnedExperts.get(layer).clear();
        }
        if (layer == layers - 1)
        {
            stats.token();
        }
    }

    private void await(final Unit u, final CompletableFuture<Void> f) throws IOException
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
            throw new IOException("timed out waiting for " + u.describe() + " of " + model.pinned());
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted waiting for " + u.describe());
        }
    }

    private void prefetchAfter(final int layer)
    {
        synchronized (this)
        {
            // beyond what this node will fetch next, tell the service which layer comes after, so that it moves
            // it from SSD or object storage into its memory tier before the node asks
            final int ahead = (layer + lookahead + 1) % layers;
            if (units[ahead].state == State.ABSENT && !hintQueue.contains(units[ahead]))
            {
                hintQueue.addLast(units[ahead]);
                LockSupport.unpark(fetcher);
            }
            boolean first = true;
            for (final int next : predictor.predict(layer, lookahead))
            {
                final Unit u = units[next];
                if (u.state != State.ABSENT)
                {
                    first = false;
                    continue;
                }
                // the next layer may take the room of one needed later; deeper look-ahead only uses free room:
                // in a budget smaller than the model every extra layer in flight is a layer less kept, one more
                // fetch per token
                if (first ? !makeRoom(u, false) : usedBytes + u.bytes > options.budgetBytes())
                {
                    break;
                }
                first = false;
                u.prefetched = true;
                u.used = false;
                u.neededBy = System.nanoTime() + predictor.distance(layer, next) * layerNanos;
                schedule(u, false);
                stats.prefetchIssued();
            }
        }
    }

    /**
     * After layer {@code layer} routed: prefetch the experts of the next layer the transition predictor expects
     * after the experts just used (one more than a token uses, to cover a second choice), into free room only:
     * these are guesses, and evicting a held unit for a wrong guess costs a fetch later.
     */
    private void prefetchExperts(final int layer)
    {
        synchronized (this)
        {
            final int next = (layer + 1) % layers;
            int issued = 0;
            for (final int guess : expertPredictor.predict(lastExpertUnit, 2 * experts))
            {
                if (guess / experts != next)
                {
                    continue;
                }
                final Unit u = units[layers + 1 + guess];
                if (++issued > config.expertsUsed() + 1)
                {
                    break;
                }
                if (u.state != State.ABSENT)
                {
                    continue;
                }
                // a guess: only into free room, never at the cost of a unit already held
                if (usedBytes + u.bytes > options.budgetBytes())
                {
                    break;
                }
                u.prefetched = true;
                u.used = false;
                u.neededBy = System.nanoTime() + layerNanos; // the next layer
                schedule(u, false);
                stats.prefetchIssued();
                expertGuesses++;
            }
        }
    }

    /** Experts of a next layer fetched on a guess of the expert predictor. */
    public synchronized long expertGuessesIssued()
    {
        return expertGuesses;
    }

    /**
     * How far in the future a unit is needed (larger: evict first). Layers by the cyclic order; a layer's experts
     * right after it, the most used first. Holds the lock.
     */
    private long distance(final Unit u)
    {
        final long step = experts + 2L;
        final long d = predictor.distance(current, u.layerOf) * step;
        if (u.expert < 0)
        {
            return d;
        }
        int rank = 0;
        final long[] use = expertUse[u.layerOf];
        for (int e = 0; e < experts; e++)
        {
            if (use[e] > use[u.expert] || (use[e] == use[u.expert] && e < u.expert))
            {
                rank++;
            }
        }
        return d + 1 + rank;
    }

    /** Frees room for {@code target}; a prefetch only evicts layers needed later than it. Holds the lock. */
    private boolean makeRoom(final Unit target, final boolean demand)
    {
        if (pooled(target.bytes))
        {
            return true; // a buffer of this size is free: no growth
        }
        while (usedBytes + target.bytes > options.budgetBytes())
        {
            if (freeOnePooled())
            {
                continue;
            }
            Unit victim = null;
            long farthest = -1;
            for (final Unit v : units)
            {
                if (v.state == State.RESIDENT && v.pins == 0 && v != target && v.index != layers)
                {
                    final long d = distance(v);
                    if (d > farthest)
                    {
                        farthest = d;
                        victim = v;
                    }
                }
            }
            if (victim == null)
            {
                if (demand)
                {
                    throw new IllegalStateException("memory budget of " + options.budgetBytes() + " bytes cannot hold " +
                        target.describe() + " (" + target.bytes + " bytes) next to the pinned and in-flight units (" +
                        usedBytes + " bytes)");
                }
                return false;
            }
            if (!demand && farthest <= distance(target))
            {
                return false;
            }
            evict(victim);
            if (victim.bytes == target.bytes)
            {
                return true; // its buffer is reused
            }
        }
        return true;
    }

    private boolean pooled(final long bytes)
    {
        final ArrayDeque<Arena> free = pool.get(bytes);
        return free != null && !free.isEmpty();
    }

    /** Releases one pooled buffer to the system. Holds the lock. */
    private boolean freeOnePooled()
    {
        for (final Map.Entry<Long, ArrayDeque<Arena>> e : pool.entrySet())
        {
            final Arena a = e.getValue().pollFirst();
            if (a != null)
            {
                pooledBuffers.remove(a);
                a.close();
                usedBytes -= e.getKey();
                return true;
            }
        }
        return false;
    }

    /** Gives a unit's buffer back to the pool. Holds the lock. */
    private void recycle(final Unit u)
    {
        pool.computeIfAbsent(u.bytes, k -> new ArrayDeque<>()).addLast(u.arena);
        pooledBuffers.put(u.arena, u.buffer);
        u.arena = null;
        u.buffer = null;
    }

    private void evict(final Unit v)
    {
        if (v.prefetched && !v.used)
        {
            stats.wasted(v.bytes);
            lookahead = Math.max(1, lookahead - 1);
        }
        v.layer = null;
        v.expertWeights = null;
        recycle(v);
        v.state = State.ABSENT;
    }

    /** Allocates the unit's buffer and queues its fetch. Holds the lock. */
    private void schedule(final Unit u, final boolean demand)
    {
        final ArrayDeque<Arena> free = pool.get(u.bytes);
        final Arena reused = free == null ? null : free.pollFirst();
        if (reused != null)
        {
            u.arena = reused;
            u.buffer = pooledBuffers.remove(reused);
        }
        else
        {
            u.arena = Arena.ofShared();
            u.buffer = u.arena.allocate(u.bytes, ALIGN);
            usedBytes += u.bytes;
        }
        peakBytes = Math.max(peakBytes, usedBytes);
        u.state = State.QUEUED;
        u.demand = demand;
        u.ready = new CompletableFuture<>();
        u.retryUntil = System.nanoTime() + options.retryFor();
        (demand ? demandQueue : prefetchQueue).addLast(u);
        LockSupport.unpark(fetcher);
    }

    /** A request in flight: which unit, and which of its blocks. */
    private record Request(Unit unit, long correlationId)
    {
    }

    private void fetchLoop()
    {
        final List<Request> inflight = new ArrayList<>();
        int idle = 0;
        while (!closed)
        {
            boolean progress = false;
            Unit next;
            synchronized (this)
            {
                next = demandQueue.pollFirst();
                final Unit head = prefetchQueue.peekFirst();
                if (next == null && head != null)
                {
                    final long inflightBytes = inflightBytes(inflight);
                    if (inflightBytes == 0 || inflightBytes + head.bytes <= MAX_PREFETCH_INFLIGHT_BYTES)
                    {
                        next = prefetchQueue.pollFirst();
                    }
                }
                if (next != null)
                {
                    next.state = State.FETCHING;
                }
            }
            if (next != null)
            {
                progress = true;
                submit(next, inflight);
            }
            progress |= cancelWrongGuesses(inflight);
            final Unit hint;
            synchronized (this)
            {
                hint = hintQueue.pollFirst();
            }
            if (hint != null)
            {
                progress = true;
                sendHint(hint);
            }
            try
            {
                final BlockClient client = inflight.isEmpty() ? null : channel.client();
                if (client != null && client.poll() > 0)
                {
                    progress = true;
                }
                for (int i = 0; i < inflight.size(); i++)
                {
                    final Request r = inflight.get(i);
                    if (client != null && client.isDone(r.correlationId()))
                    {
                        inflight.remove(i--);
                        progress = true;
                        complete(r, client, inflight);
                    }
                }
            }
            catch (final IOException ex)
            {
                retryAll(inflight, ex);
            }
            if (progress)
            {
                idle = 0;
            }
            else if (inflight.isEmpty())
            {
                // nothing to wait for: sleep until schedule() or close() unparks this thread, so that an idle
                // fetcher never takes a core from the forward pass
                synchronized (this)
                {
                    if (!demandQueue.isEmpty() || !prefetchQueue.isEmpty() || !hintQueue.isEmpty() ||
                        !cancelQueue.isEmpty())
                    {
                        continue;
                    }
                }
                LockSupport.park(this);
            }
            else if (++idle > 200)
            {
                LockSupport.parkNanos(50_000);
            }
            else
            {
                Thread.onSpinWait();
            }
        }
    }

    /**
     * Cancels the requests of guesses in flight that the router did not pick, unless they became needed since.
     * On the fetcher, under the lock: once the client has forgotten a request, nothing more is written into the
     * unit's buffer, so it can go back to the pool at once.
     */
    private boolean cancelWrongGuesses(final List<Request> inflight)
    {
        synchronized (this)
        {
            if (cancelQueue.isEmpty())
            {
                return false;
            }
            Unit u;
            while ((u = cancelQueue.pollFirst()) != null)
            {
                if (u.state != State.FETCHING || u.demand || u.pins > 0)
                {
                    continue; // arrived meanwhile, or wanted after all
                }
                final BlockClient client = channel.current();
                for (int i = 0; i < inflight.size(); i++)
                {
                    final Request r = inflight.get(i);
                    if (r.unit() == u)
                    {
                        inflight.remove(i--);
                        if (client != null)
                        {
                            client.cancel(r.correlationId());
                        }
                    }
                }
                recycle(u);
                u.state = State.ABSENT;
                u.ready.completeExceptionally(new java.util.concurrent.CancellationException("unused guess"));
                stats.cancelled(true);
            }
            return true;
        }
    }

    private void sendHint(final Unit u)
    {
        try
        {
            final BlockClient client = channel.client();
            for (int from = 0; from < u.blocks.size(); from += BlockClient.MAX_BLOCKS_PER_REQUEST)
            {
                if (client.hint(model.pinned(), u.blocks.subList(from, Math.min(u.blocks.size(),
                    from + BlockClient.MAX_BLOCKS_PER_REQUEST)), options.retryFor()))
                {
                    hintsSent++;
                }
            }
        }
        catch (final IOException ex)
        {
            // a hint is advice: a service that cannot take it now loses nothing
        }
    }

    /**
     * The expert units this source used, in order, as a trace another node can train its predictor on before its
     * first token ({@link Options#withExpertTraining}); null for a model whose experts are not streamed one by one.
     */
    public synchronized AccessTrace expertTrace()
    {
        return expertUnits ? new AccessTrace(layers * experts, expertTrace.toIntArray()) : null;
    }

    /** Prefetch hints sent to the service. */
    public long hintsSent()
    {
        return hintsSent;
    }

    private static long inflightBytes(final List<Request> inflight)
    {
        return inflight.stream().map(Request::unit).distinct().mapToLong(u -> u.bytes).sum();
    }

    private void submit(final Unit u, final List<Request> inflight)
    {
        try
        {
            final BlockClient client = channel.client();
            for (int from = 0; from < u.blocks.size(); from += BlockClient.MAX_BLOCKS_PER_REQUEST)
            {
                final int to = Math.min(u.blocks.size(), from + BlockClient.MAX_BLOCKS_PER_REQUEST);
                final long[] offsets = new long[to - from];
                for (int i = from; i < to; i++)
                {
                    offsets[i - from] = u.blockOffsets.get(i);
                }
                inflight.add(new Request(u, client.submitInto(model.pinned(), u.blocks.subList(from, to), u.buffer,
                    offsets, options.requestTimeout(), u.demand ? 0 : 1, Math.max(0, u.neededBy - System.nanoTime()))));
            }
        }
        catch (final IOException ex)
        {
            inflight.removeIf(r -> r.unit() == u);
            failOrRetry(u, ex);
            channel.reset();
        }
    }

    private void complete(final Request r, final BlockClient client, final List<Request> inflight)
    {
        final Unit u = r.unit();
        try
        {
            client.await(r.correlationId());
        }
        catch (final BlockClient.FetchException ex)
        {
            inflight.removeIf(x -> x.unit() == u);
            final Status s = ex.status();
            if (s == null || s == Status.UNAVAILABLE || s == Status.BUSY)
            {
                channel.reset(); // the service may have restarted elsewhere: look its endpoints up again
                retryAll(inflight, ex);
                failOrRetry(u, ex);
            }
            else
            {
                fail(u, new IOException(u.describe() + " of " + model.pinned() + " cannot be fetched: " +
                    ex.getMessage(), ex));
            }
            return;
        }
        for (final Request other : inflight)
        {
            if (other.unit() == u)
            {
                return; // more requests of this unit still to come
            }
        }
        final MemorySegment buffer = u.buffer;
        final WeightViews.Lookup lookup = name ->
        {
            final long[] span = u.tensorSpans.get(name);
            if (span == null)
            {
                return null;
            }
            final Manifest.Tensor t = model.tensor(name);
            return new WeightViews.Tensor(GgmlType.valueOf(t.type()), t.shape(), buffer.asSlice(span[0], span[1]));
        };
        try
        {
            if (u.expert >= 0)
            {
                final String[] n = WeightViews.expertTensorNames(u.layerOf);
                final WeightViews.Tensor g = lookup.tensor(n[0]);
                u.expertWeights = WeightViews.expert(config, u.layerOf, u.expert, g.type(), g.data(),
                    lookup.tensor(n[1]).data(), lookup.tensor(n[2]).data());
            }
            else if (u.index == layers)
            {
                u.globals = WeightViews.globals(lookup, config);
            }
            else
            {
                u.layer = WeightViews.layer(lookup, config, u.index, !expertUnits);
            }
        }
        catch (final RuntimeException ex)
        {
            fail(u, new IOException(u.describe() + " of " + model.pinned() + " is malformed: " + ex.getMessage(), ex));
            return;
        }
        synchronized (this)
        {
            u.state = State.RESIDENT;
        }
        stats.fetched(u.bytes);
        u.ready.complete(null);
    }

    private void retryAll(final List<Request> inflight, final Exception cause)
    {
        final List<Unit> again = inflight.stream().map(Request::unit).distinct().toList();
        inflight.clear();
        channel.reset();
        for (final Unit u : again)
        {
            failOrRetry(u, cause);
        }
    }

    /** Queues the unit again unless it has been retried for too long. */
    private void failOrRetry(final Unit u, final Exception cause)
    {
        if (System.nanoTime() > u.retryUntil)
        {
            fail(u, new IOException("the parameter service did not deliver " + u.describe() + " of " +
                model.pinned() + " within " + TimeUnit.NANOSECONDS.toSeconds(options.retryFor()) + " s: " +
                cause.getMessage(), cause));
            return;
        }
        LockSupport.parkNanos(50_000_000); // do not hammer a restarting service
        synchronized (this)
        {
            u.state = State.QUEUED;
            (u.demand ? demandQueue : prefetchQueue).addFirst(u);
        }
    }

    private void fail(final Unit u, final IOException ex)
    {
        synchronized (this)
        {
            u.layer = null;
            u.buffer = null;
            if (u.arena != null)
            {
                u.arena.close();
                u.arena = null;
                usedBytes -= u.bytes;
            }
            u.state = State.ABSENT;
        }
        u.ready.completeExceptionally(ex);
    }

    @Override
    public void close()
    {
        closed = true;
        LockSupport.unpark(fetcher);
        try
        {
            fetcher.join(TimeUnit.SECONDS.toMillis(10));
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
        channel.close();
        synchronized (this)
        {
            for (final Unit u : units)
            {
                if (u.arena != null)
                {
                    u.arena.close();
                    u.arena = null;
                    usedBytes -= u.bytes;
                }
                u.state = State.ABSENT;
            }
            while (freeOnePooled())
            {
                // every pooled buffer back to the system
            }
        }
    }
}
