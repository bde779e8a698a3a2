package dev.strata.compute.stream;

import dev.strata.transport.bulk.SharedRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.Map;

/**
 * The node's memory for weights: unit buffers within a byte budget, and buffers of evicted units kept for reuse,
 * by size. A transformer's layers, and its experts, are all the same size, so an evicted layer's buffer is the
 * next layer's: a fresh allocation is zero-filled and page-faulted in, which cost more than the transfer itself.
 * Pooled buffers count in {@link #usedBytes()}, so the budget bounds what the node really holds; they are given
 * back to the system, largest count first, when a buffer of another size needs the room.
 * <p>
 * This is not the tiering module's {@code MemoryTier}: that holds content-addressed blocks with their own
 * eviction, while a unit is a buffer many blocks land in, evicted by the planner's distance. A node does not carry
 * the tiering module (nor its RocksDB and S3 dependencies) at all.
 * <p>
 * Not thread-safe: the streaming source uses it under its lock.
 */
final class UnitPool implements AutoCloseable
{
    private long budgetBytes;
    private final Map<Long, ArrayDeque<MemorySegment>> free = new HashMap<>();
    private final Map<MemorySegment, Arena> arenas = new IdentityHashMap<>();
    private final Map<MemorySegment, SharedRegion> regions = new IdentityHashMap<>();
    private final boolean shared;
    private long usedBytes;
    private long peakBytes;

    UnitPool(final long budgetBytes)
    {
        this(budgetBytes, false);
    }

    /**
     * @param shared buffers in shared regions (IPC pulls with direct placement), where the tmpfs has room; plain
     *               off-heap memory otherwise.
     */
    UnitPool(final long budgetBytes, final boolean shared)
    {
        this.shared = shared;
        if (budgetBytes <= 0)
        {
            throw new IllegalArgumentException("invalid budgetBytes=" + budgetBytes);
        }
        this.budgetBytes = budgetBytes;
    }

    long budgetBytes()
    {
        return budgetBytes;
    }

    /** Changes the budget; what is held above a smaller one is given back as units are evicted. */
    void budgetBytes(final long bytes)
    {
        if (bytes <= 0)
        {
            throw new IllegalArgumentException("invalid budgetBytes=" + bytes);
        }
        this.budgetBytes = bytes;
    }

    /** Bytes of pooled buffers: held, counted in the budget, holding no unit. */
    long pooledBytes()
    {
        long n = 0;
        for (final Map.Entry<Long, ArrayDeque<MemorySegment>> e : free.entrySet())
        {
            n += e.getKey() * e.getValue().size();
        }
        return n;
    }

    /** Bytes of every buffer held: in use and pooled. */
    long usedBytes()
    {
        return usedBytes;
    }

    /** The most bytes ever held at once. */
    long peakBytes()
    {
        return peakBytes;
    }

    /** Whether a pooled buffer of exactly {@code bytes} is free (taking it does not grow what is held). */
    boolean hasFree(final long bytes)
    {
        final ArrayDeque<MemorySegment> q = free.get(bytes);
        return q != null && !q.isEmpty();
    }

    /** Whether a new buffer of {@code bytes} fits the budget next to what is held now. */
    boolean fits(final long bytes)
    {
        return usedBytes + bytes <= budgetBytes;
    }

    /**
     * A buffer of {@code bytes}: a pooled one if any, else a new allocation (the caller has made room; the
     * budget is the caller's to keep, see {@link #fits}).
     */
    MemorySegment take(final long bytes)
    {
        final ArrayDeque<MemorySegment> q = free.get(bytes);
        final MemorySegment pooled = q == null ? null : q.pollFirst();
        if (pooled != null)
        {
            return pooled;
        }
        MemorySegment buffer = null;
        if (shared)
        {
            try
            {
                final SharedRegion region = SharedRegion.create(bytes); // page-aligned
                buffer = region.segment();
                regions.put(buffer, region);
            }
            catch (final java.io.IOException ex)
            {
                // no room in the tmpfs: plain memory, pulled as chunks
            }
        }
        if (buffer == null)
        {
            final Arena arena = Arena.ofShared();
            buffer = dev.strata.compute.tensor.HugePages.allocate(arena, bytes); // 64-byte aligned at least
            assert buffer.address() % UnitLayout.ALIGN == 0;
            arenas.put(buffer, arena);
        }
        usedBytes += bytes;
        peakBytes = Math.max(peakBytes, usedBytes);
        return buffer;
    }

    /** Keeps {@code buffer} for reuse (it still counts in the budget). */
    void recycle(final MemorySegment buffer)
    {
        free.computeIfAbsent(buffer.byteSize(), k -> new ArrayDeque<>()).addLast(buffer);
    }

    /** Gives {@code buffer} back to the system. */
    void release(final MemorySegment buffer)
    {
        final Arena arena = arenas.remove(buffer);
        final SharedRegion region = arena == null ? regions.remove(buffer) : null;
        if (arena != null)
        {
            arena.close();
            usedBytes -= buffer.byteSize();
        }
        else if (region != null)
        {
            region.close();
            usedBytes -= buffer.byteSize();
        }
    }

    /** Gives one pooled buffer back to the system; false when none is pooled. */
    boolean releaseOnePooled()
    {
        for (final Iterator<ArrayDeque<MemorySegment>> it = free.values().iterator(); it.hasNext(); )
        {
            final MemorySegment b = it.next().pollFirst();
            if (b != null)
            {
                release(b);
                return true;
            }
        }
        return false;
    }

    /** Gives every buffer back to the system, pooled or not. */
    @Override
    public void close()
    {
        for (final Arena a : arenas.values())
        {
            a.close();
        }
        arenas.clear();
        regions.values().forEach(SharedRegion::close);
        regions.clear();
        free.clear();
        usedBytes = 0;
    }
}
