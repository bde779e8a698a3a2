package dev.strata.tiering;

import dev.strata.transport.BlockId;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.PriorityBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Immutable blocks over three tiers: memory (hot, bounded, zero-copy), SSD (optional) and object storage
 * (durable home of every block).
 * <ul>
 * <li><b>Writes</b> are durable in the object tier before {@link #put} returns. SSD and object tiers hold the
 * {@link BlockCodec} stored form (LZ4 where it pays); the memory tier holds content.</li>
 * <li><b>Reads</b> cascade memory → SSD → object. Every copy read from the SSD or object tier is checked
 * against its SHA-256 id; a bad copy counts as a corrupt miss, is dropped, and the next tier is tried; a good
 * copy from below is written back up (repair and promotion). Memory-tier copies are verified once, when they
 * enter the tier, and trusted afterwards, so that zero-copy reads cost no hashing. Corrupt bytes are never
 * returned: with no good copy left the read fails with {@link BlockStoreException.Reason#CORRUPT}.</li>
 * <li><b>Single flight</b>: concurrent reads of the same missing block share one fetch.</li>
 * <li><b>Prefetch</b>: {@link #prefetch} queues a promotion with a priority and a deadline; demand reads
 * never wait behind it.</li>
 * </ul>
 * The store does not own its tiers: whoever opened them closes them.
 */
public final class TieredBlockStore implements AutoCloseable
{
    /** Tier indexes in {@link Stats}. */
    public static final int MEMORY = 0, SSD = 1, OBJECT = 2;

    /**
     * Counters, per tier where it applies.
     *
     * @param hits      reads served by each tier.
     * @param corrupt   copies that failed verification, per tier.
     * @param repairs   good copies written back over missing or corrupt ones.
     * @param fetches   fetches from below memory (single flight makes this smaller than the misses).
     * @param prefetched prefetches that promoted a block; expired: dropped past their deadline.
     */
    public record Stats(long[] hits, long[] corrupt, long repairs, long fetches, long prefetched, long expired)
    {
    }

    /** A block handed to a reader; close it to release the pin. */
    public final class Pinned implements AutoCloseable
    {
        private final BlockId id;
        private final MemorySegment bytes;
        private final boolean pinned;
        private boolean closed;

        Pinned(final BlockId id, final MemorySegment bytes, final boolean pinned)
        {
            this.id = id;
            this.bytes = bytes;
            this.pinned = pinned;
        }

        /** The block's content: a read-only view of the memory tier while pinned, else a verified copy. */
        public MemorySegment bytes()
        {
            return bytes;
        }

        public BlockId id()
        {
            return id;
        }

        @Override
        public void close()
        {
            if (!closed)
            {
                closed = true;
                if (pinned)
                {
                    memory.unpin(id);
                }
            }
        }
    }

    private final MemoryTier memory;
    private final Tier ssd;
    private final Tier object;
    private final long maxBlockBytes;
    private final ConcurrentHashMap<BlockId, CompletableFuture<Fetched>> inflight = new ConcurrentHashMap<>();
    private final ThreadPoolExecutor prefetcher;
    private final AtomicLongArray hits = new AtomicLongArray(3);
    private final AtomicLongArray corrupt = new AtomicLongArray(3);
    private final AtomicLongArray misses = new AtomicLongArray(3);
    private final AtomicLongArray readBytes = new AtomicLongArray(3);
    private final Timer[] latency = new Timer[3];
    private static final String[] TIER_NAMES = {"memory", "ssd", "object"};
    private final AtomicLong repairs = new AtomicLong();
    private final AtomicLong fetches = new AtomicLong();
    private final AtomicLong prefetched = new AtomicLong();
    private final AtomicLong expired = new AtomicLong();
    private final AtomicLong quarantined = new AtomicLong();
    private final AtomicLong sequence = new AtomicLong();
    private final IndexUpdates index;
    private final BlockCodec codec = new BlockCodec(true);

    /**
     * Everything a store is built from, set fluently and checked once by {@link #conclude()}: the memory tier
     * and the object tier are required; the SSD tier and the index are optional. The store does not own the
     * tiers or the index: whoever opened them closes them.
     */
    public static final class Context
    {
        private MemoryTier memory;
        private Tier ssd;
        private Tier object;
        private BlockIndex index;
        private long maxBlockBytes = 64L << 20;
        private int prefetchThreads = 2;
        private MeterRegistry meterRegistry;

        /** The hot tier (required). */
        public Context memory(final MemoryTier tier)
        {
            this.memory = tier;
            return this;
        }

        /** The SSD tier; none by default. */
        public Context ssd(final Tier tier)
        {
            this.ssd = tier;
            return this;
        }

        /** The durable tier (required). */
        public Context object(final Tier tier)
        {
            this.object = tier;
            return this;
        }

        /**
         * An index kept current from the start (stores, promotions, reads, repairs); it is reconciled with what
         * the SSD and object tiers hold when the store opens. None by default.
         */
        public Context index(final BlockIndex blockIndex)
        {
            this.index = blockIndex;
            return this;
        }

        /** Largest block accepted (64 MiB by default). */
        public Context maxBlockBytes(final long bytes)
        {
            this.maxBlockBytes = bytes;
            return this;
        }

        /** Threads running prefetches (2 by default). */
        public Context prefetchThreads(final int threads)
        {
            this.prefetchThreads = threads;
            return this;
        }

        /**
         * Where the store publishes its metrics (a private registry by default): per tier
         * {@code strata.tier.hits}, {@code .misses}, {@code .corrupt}, {@code .read.bytes}, {@code .read.latency},
         * {@code .used.bytes}; and {@code strata.tier.repairs}, {@code .fetches}, {@code .evictions},
         * {@code .memory.budget.bytes}, {@code .prefetch.done}, {@code .prefetch.expired}.
         */
        public Context meterRegistry(final MeterRegistry registry)
        {
            this.meterRegistry = registry;
            return this;
        }

        /**
         * Validates and fills in defaults.
         *
         * @throws IllegalArgumentException naming the first bad setting.
         */
        public Context conclude()
        {
            if (memory == null)
            {
                throw new IllegalArgumentException("invalid memory=null: a store needs a memory tier");
            }
            if (object == null)
            {
                throw new IllegalArgumentException("invalid object=null: a store needs an object tier");
            }
            if (maxBlockBytes <= 0)
            {
                throw new IllegalArgumentException("invalid maxBlockBytes=" + maxBlockBytes);
            }
            if (prefetchThreads < 1)
            {
                throw new IllegalArgumentException("invalid prefetchThreads=" + prefetchThreads);
            }
            if (ssd == null)
            {
                ssd = AbsentTier.SSD;
            }
            if (meterRegistry == null)
            {
                meterRegistry = new SimpleMeterRegistry();
            }
            return this;
        }
    }

    /**
     * Opens a store in one step: the context is concluded, the index (if any) reconciled with the tiers, and
     * the store serves from the moment it is returned.
     */
    public static TieredBlockStore open(final Context context) throws IOException
    {
        context.conclude();
        if (context.index != null)
        {
            context.index.reconcile(context.ssd == AbsentTier.SSD ? null : context.ssd, context.object);
        }
        return new TieredBlockStore(context);
    }

    private TieredBlockStore(final Context ctx)
    {
        this.memory = ctx.memory;
        this.ssd = ctx.ssd;
        this.object = ctx.object;
        this.index = ctx.index != null ? new IndexUpdates.Of(ctx.index) : IndexUpdates.NONE;
        this.maxBlockBytes = ctx.maxBlockBytes;
        final int prefetchThreads = ctx.prefetchThreads;
        final MeterRegistry registry = ctx.meterRegistry;
        this.prefetcher = new ThreadPoolExecutor(prefetchThreads, prefetchThreads, 30, TimeUnit.SECONDS,
            new PriorityBlockingQueue<>(), r -> Thread.ofPlatform().daemon().name("strata-prefetch").unstarted(r));
        final Tier[] tiers = {memory, ssd, object};
        for (int t = 0; t < 3; t++)
        {
            if (tiers[t] instanceof AbsentTier)
            {
                continue;
            }
            final int i = t;
            final String tier = TIER_NAMES[t];
            FunctionCounter.builder("strata.tier.hits", hits, a -> a.get(i)).tag("tier", tier).register(registry);
            FunctionCounter.builder("strata.tier.misses", misses, a -> a.get(i)).tag("tier", tier).register(registry);
            FunctionCounter.builder("strata.tier.corrupt", corrupt, a -> a.get(i)).tag("tier", tier).register(registry);
            FunctionCounter.builder("strata.tier.read.bytes", readBytes, a -> a.get(i)).tag("tier", tier)
                .baseUnit("bytes").register(registry);
            Gauge.builder("strata.tier.used.bytes", tiers[t], Tier::usedBytes).tag("tier", tier).baseUnit("bytes")
                .register(registry);
        }
        for (int t = 0; t < 3; t++)
        {
            latency[t] = Timer.builder("strata.tier.read.latency").tag("tier", TIER_NAMES[t]).register(registry);
        }
        FunctionCounter.builder("strata.tier.repairs", repairs, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.tier.fetches", fetches, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.tier.evictions", memory, MemoryTier::evictions).register(registry);
        Gauge.builder("strata.tier.memory.budget.bytes", memory, MemoryTier::budgetBytes).baseUnit("bytes")
            .register(registry);
        FunctionCounter.builder("strata.tier.prefetch.done", prefetched, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.tier.prefetch.expired", expired, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.tier.quarantined", quarantined, AtomicLong::get).register(registry);
    }

    private void indexStored(final BlockId id, final int bit)
    {
        index.stored(id, bit);
    }

    /**
     * Stores a block durably in the object tier and returns its id. Storing a block that exists is cheap and
     * safe (content addressing).
     */
    public BlockId put(final MemorySegment content) throws IOException
    {
        return put(null, content);
    }

    /**
     * As {@link #put(MemorySegment)}, for content that claims an id (an upload): the content is hashed once, and
     * refused before anything is written when it is not what {@code expected} names.
     *
     * @throws IllegalArgumentException if the content does not match {@code expected}.
     */
    public BlockId put(final BlockId expected, final MemorySegment content) throws IOException
    {
        if (content.byteSize() == 0)
        {
            throw new IllegalArgumentException("empty block: blocks hold at least one byte");
        }
        if (content.byteSize() > maxBlockBytes)
        {
            throw new IllegalArgumentException("block of " + content.byteSize() + " bytes exceeds the limit of " +
                maxBlockBytes);
        }
        final BlockId id = BlockId.of(content);
        if (expected != null && !expected.equals(id))
        {
            throw new IllegalArgumentException("block content does not match its id " + expected + " (it is " + id +
                ")");
        }
        if (!object.put(id, codec.encode(content)))
        {
            throw new BlockStoreException(BlockStoreException.Reason.UNAVAILABLE,
                "object tier refused block " + id, null);
        }
        indexStored(id, BlockIndex.OBJECT_BIT);
        return id;
    }

    /**
     * Removes a block from every tier: garbage collection of blocks no version refers to any more. The durable copies
     * go at once; a copy pinned in memory right now (a send in progress) stays until the memory tier evicts it.
     *
     * @return whether any tier held the block.
     */
    public boolean delete(final BlockId id) throws IOException
    {
        boolean held = object.delete(id);
        index.removed(id, BlockIndex.OBJECT_BIT);
        held |= ssd.delete(id);
        index.removed(id, BlockIndex.SSD_BIT);
        try
        {
            held |= memory.delete(id);
        }
        catch (final IllegalStateException pinned)
        {
            held = true;
        }
        return held;
    }

    /** Whether the block is durably stored (in the object tier): what an upload asks before sending it. */
    public boolean contains(final BlockId id) throws IOException
    {
        return object.contains(id);
    }

    /**
     * The block pinned in the memory tier if it is resident there, else null with nothing read: never touches
     * the SSD or object tier, so an event loop can call it and hand the cold case to another thread
     * ({@link #acquire}). Close the result when done.
     */
    public Pinned acquireIfResident(final BlockId id)
    {
        final MemorySegment resident = memory.pin(id);
        if (resident == null)
        {
            return null;
        }
        hits.incrementAndGet(MEMORY);
        readBytes.addAndGet(MEMORY, resident.byteSize());
        return new Pinned(id, resident, true);
    }

    /**
     * Reads a block, pinned in the memory tier when it fits there. Close the result when done.
     *
     * @throws BlockStoreException UNKNOWN if no tier holds it, CORRUPT if no good copy is left, UNAVAILABLE if
     *                             the tiers that might hold it cannot be reached.
     */
    public Pinned acquire(final BlockId id) throws IOException
    {
        final MemorySegment resident = memory.pin(id);
        if (resident != null)
        {
            hits.incrementAndGet(MEMORY);
            readBytes.addAndGet(MEMORY, resident.byteSize());
            return new Pinned(id, resident, true);
        }
        misses.incrementAndGet(MEMORY);
        final Fetched fetched = fetch(id);
        index.accessed(id);
        final MemorySegment view = memory.putAndPin(id, fetched.bytes(), true);
        memory.refetchCost(id, fetched.nanosPerMiB()); // now resident: the cost-aware policy can weigh it
        return view != null ? new Pinned(id, view, true) : new Pinned(id, fetched.bytes(), false);
    }

    /** A verified copy from below the memory tier, and what fetching it cost per MiB. */
    private record Fetched(MemorySegment bytes, double nanosPerMiB)
    {
    }

    /** Reads a verified copy of a block from below the memory tier, one fetch per block at a time. */
    private Fetched fetch(final BlockId id) throws IOException
    {
        final CompletableFuture<Fetched> mine = new CompletableFuture<>();
        final CompletableFuture<Fetched> theirs = inflight.putIfAbsent(id, mine);
        if (theirs != null)
        {
            try
            {
                return theirs.join();
            }
            catch (final java.util.concurrent.CompletionException ex)
            {
                throw ex.getCause() instanceof IOException io ? io : new IOException(ex.getCause());
            }
        }
        try
        {
            fetches.incrementAndGet();
            final long start = System.nanoTime();
            final Fetched fetched = new Fetched(fetchBelow(id),
                (System.nanoTime() - start) * (double)(1 << 20) / id.length());
            mine.complete(fetched);
            return fetched;
        }
        catch (final IOException | RuntimeException ex)
        {
            mine.completeExceptionally(ex);
            throw ex;
        }
        finally
        {
            inflight.remove(id, mine);
        }
    }

    private MemorySegment fetchBelow(final BlockId id) throws IOException
    {
        boolean ssdCorrupt = false;
        IOException ssdFailure = null;
        if (!(ssd instanceof AbsentTier))
        {
            try
            {
                final long t0 = System.nanoTime();
                final MemorySegment stored = ssdCopy(id);
                latency[SSD].record(System.nanoTime() - t0, TimeUnit.NANOSECONDS);
                if (stored == DAMAGED)
                {
                    corrupt.incrementAndGet(SSD);
                    dropCopy(ssd, id, BlockIndex.SSD_BIT);
                    ssdCorrupt = true;
                }
                else if (stored != null)
                {
                    final MemorySegment bytes = codec.decode(stored);
                    if (bytes != null && id.matches(bytes))
                    {
                        hits.incrementAndGet(SSD);
                        readBytes.addAndGet(SSD, bytes.byteSize());
                        return bytes;
                    }
                    corrupt.incrementAndGet(SSD);
                    dropCopy(ssd, id, BlockIndex.SSD_BIT);
                    ssdCorrupt = true;
                }
                misses.incrementAndGet(SSD);
            }
            catch (final IOException ex)
            {
                ssdFailure = ex;
            }
        }
        final MemorySegment stored;
        final long t0 = System.nanoTime();
        try
        {
            stored = object.get(id);
            latency[OBJECT].record(System.nanoTime() - t0, TimeUnit.NANOSECONDS);
        }
        catch (final IOException ex)
        {
            if (ssdFailure != null)
            {
                ex.addSuppressed(ssdFailure);
            }
            throw new BlockStoreException(BlockStoreException.Reason.UNAVAILABLE,
                "block " + id + " is not in memory and the object tier cannot be read: " + ex.getMessage(), ex);
        }
        if (stored == null)
        {
            misses.incrementAndGet(OBJECT);
            throw new BlockStoreException(BlockStoreException.Reason.UNKNOWN, "unknown block " + id, ssdFailure);
        }
        final MemorySegment bytes = codec.decode(stored);
        if (bytes == null || !id.matches(bytes))
        {
            misses.incrementAndGet(OBJECT);
            corrupt.incrementAndGet(OBJECT);
            quarantine(id);
            throw new BlockStoreException(BlockStoreException.Reason.CORRUPT,
                "block " + id + " is corrupt in the object tier and no good copy is left: it was dropped (upload " +
                    "the block again to heal it)", ssdFailure);
        }
        hits.incrementAndGet(OBJECT);
        readBytes.addAndGet(OBJECT, bytes.byteSize());
        // promotion object -> SSD; over a corrupt copy it is a repair
        if (ssdFailure == null && ssd.put(id, stored))
        {
            indexStored(id, BlockIndex.SSD_BIT);
            if (ssdCorrupt)
            {
                repairs.incrementAndGet();
            }
        }
        return bytes;
    }

    /** What {@link #ssdCopy} returns for a copy the SSD tier itself found damaged. */
    private static final MemorySegment DAMAGED = MemorySegment.ofArray(new byte[0]);

    /** The SSD tier's stored copy, null when it has none, {@link #DAMAGED} when its own checksums fail. */
    private MemorySegment ssdCopy(final BlockId id) throws IOException
    {
        try
        {
            return ssd.get(id);
        }
        catch (final CorruptCopyException ex)
        {
            return DAMAGED;
        }
    }

    /** Deletes one tier's bad copy; a tier that cannot delete it now is left for the next scrub. */
    private void dropCopy(final Tier tier, final BlockId id, final int bit)
    {
        try
        {
            tier.delete(id);
            index.removed(id, bit);
        }
        catch (final IOException | RuntimeException ex)
        {
            System.getLogger(TieredBlockStore.class.getName()).log(System.Logger.Level.WARNING,
                "cannot drop the bad " + tier.name() + " copy of " + id + ": " + ex.getMessage());
        }
    }

    /**
     * A block found with no good copy left: every stored copy is dropped, so that the block stops counting as
     * present ({@link #contains} is false) and an upload of its bytes stores it again. Quarantined blocks are
     * counted ({@code strata.tier.quarantined}).
     */
    private void quarantine(final BlockId id)
    {
        dropCopy(object, id, BlockIndex.OBJECT_BIT);
        if (!(ssd instanceof AbsentTier))
        {
            dropCopy(ssd, id, BlockIndex.SSD_BIT);
        }
        quarantined.incrementAndGet();
    }

    /** Blocks dropped because no good copy was left. */
    public long quarantined()
    {
        return quarantined.get();
    }

    /**
     * Checks every tier's copy of a block and rewrites bad or missing copies in the SSD and object tiers from a
     * good one (the memory copy included). With no good copy left, the bad copies are dropped (quarantined): the
     * block is then missing, and uploading its bytes again heals it.
     *
     * @return whether a good copy exists.
     */
    public boolean scrub(final BlockId id) throws IOException
    {
        MemorySegment good = null;
        final MemorySegment resident = memory.pin(id);
        try
        {
            if (resident != null)
            {
                good = copyOf(resident);
            }
        }
        finally
        {
            if (resident != null)
            {
                memory.unpin(id);
            }
        }
        final Tier[] lower = {ssd, object};
        final boolean[] bad = new boolean[lower.length];
        boolean anyStored = false;
        for (int i = 0; i < lower.length; i++)
        {
            final MemorySegment stored = lower[i] == ssd ? ssdCopy(id) : lower[i].get(id);
            anyStored |= stored != null;
            final MemorySegment copy = stored == null || stored == DAMAGED ? null : codec.decode(stored);
            if (copy != null && id.matches(copy))
            {
                good = good == null ? copy : good;
            }
            else
            {
                if (stored != null)
                {
                    corrupt.incrementAndGet(lower[i] == ssd ? SSD : OBJECT);
                }
                bad[i] = stored != null || lower[i] == object;
            }
        }
        if (good == null)
        {
            if (anyStored)
            {
                quarantine(id);
            }
            return false;
        }
        final MemorySegment encoded = codec.encode(good);
        for (int i = 0; i < lower.length; i++)
        {
            if (bad[i])
            {
                lower[i].delete(id);
                if (lower[i].put(id, encoded))
                {
                    repairs.incrementAndGet();
                }
            }
        }
        return true;
    }

    private static MemorySegment copyOf(final MemorySegment s)
    {
        final MemorySegment copy = java.lang.foreign.Arena.ofAuto().allocate(s.byteSize());
        MemorySegment.copy(s, 0, copy, 0, s.byteSize());
        return copy;
    }

    /**
     * Queues a promotion of a block into the memory tier. Lower {@code priority} runs first; a prefetch that
     * starts after {@code deadlineNanos} (a {@link System#nanoTime()} value) is dropped as useless.
     *
     * @return completes when the block is resident (true), dropped (false), or failed.
     */
    public CompletableFuture<Boolean> prefetch(final BlockId id, final int priority, final long deadlineNanos)
    {
        final CompletableFuture<Boolean> done = new CompletableFuture<>();
        prefetcher.execute(new PrefetchTask(priority, deadlineNanos, sequence.incrementAndGet(), () ->
        {
            if (System.nanoTime() > deadlineNanos)
            {
                expired.incrementAndGet();
                done.complete(false);
                return;
            }
            try
            {
                if (!memory.contains(id))
                {
                    final Fetched fetched = fetch(id);
                    memory.put(id, fetched.bytes());
                    memory.refetchCost(id, fetched.nanosPerMiB());
                    prefetched.incrementAndGet();
                }
                done.complete(true);
            }
            catch (final IOException | RuntimeException ex)
            {
                done.completeExceptionally(ex);
            }
        }));
        return done;
    }

    /** A prefetch ordered by priority, then deadline, then arrival. */
    private record PrefetchTask(int priority, long deadline, long seq, Runnable body)
        implements Runnable, Comparable<PrefetchTask>
    {
        @Override
        public void run()
        {
            body.run();
        }

        @Override
        public int compareTo(final PrefetchTask o)
        {
            if (priority != o.priority)
            {
                return Integer.compare(priority, o.priority);
            }
            if (deadline != o.deadline)
            {
                return Long.compare(deadline, o.deadline);
            }
            return Long.compare(seq, o.seq);
        }
    }

    public Stats stats()
    {
        final long[] h = new long[3];
        final long[] c = new long[3];
        for (int i = 0; i < 3; i++)
        {
            h[i] = hits.get(i);
            c[i] = corrupt.get(i);
        }
        return new Stats(h, c, repairs.get(), fetches.get(), prefetched.get(), expired.get());
    }

    public MemoryTier memory()
    {
        return memory;
    }

    @Override
    public void close() throws IOException
    {
        prefetcher.shutdownNow();
        try
        {
            prefetcher.awaitTermination(5, TimeUnit.SECONDS);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }
}
