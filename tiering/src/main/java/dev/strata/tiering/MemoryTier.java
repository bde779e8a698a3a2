package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

/**
 * The hot "device memory" tier: blocks held off-heap, handed out as read-only zero-copy
 * {@link MemorySegment} views.
 * <p>
 * <b>Budget.</b> At most {@code budgetBytes} of block content is resident. Each block lives in its own
 * off-heap allocation (one shared {@link Arena} per block), freed when the block is evicted. When a put does
 * not fit, unpinned blocks are evicted in the order of the {@link EvictionPolicy} (lowest priority first)
 * until it does; if pinned blocks leave no room, the put is refused.
 * <p>
 * <b>Pins.</b> {@link #pin} returns a view and keeps the block resident until the matching {@link #unpin}:
 * the blocks of a layer that is computing are never evicted. A view obtained by {@link #get} without a pin
 * may be freed by a later eviction; reading it then fails with an {@link IllegalStateException}, never with
 * garbage.
 * <p>
 * Thread-safe: bookkeeping is under one lock; reading a view's bytes takes no lock.
 */
public final class MemoryTier implements Tier
{
    private static final class Resident
    {
        final Arena arena;
        final MemorySegment view;
        long lastAccess;
        long hits;
        int pins;
        double refetchNanosPerMiB;

        Resident(final Arena arena, final MemorySegment view)
        {
            this.arena = arena;
            this.view = view;
        }
    }

    /** Changed at run time by {@link #budgetBytes(long)} (the dashboard's knob); read under the lock. */
    private long budgetBytes;
    private EvictionPolicy policy;
    private final Map<BlockId, Resident> blocks = new HashMap<>();
    private long usedBytes;
    private long clock;
    private double floor;
    private long evictions;

    public MemoryTier(final long budgetBytes, final EvictionPolicy policy)
    {
        if (budgetBytes <= 0)
        {
            throw new IllegalArgumentException("invalid memory budget=" + budgetBytes + " bytes");
        }
        this.budgetBytes = budgetBytes;
        this.policy = policy;
    }

    @Override
    public String name()
    {
        return "memory";
    }

    public synchronized long budgetBytes()
    {
        return budgetBytes;
    }

    /**
     * Changes the budget at run time. A smaller budget evicts unpinned blocks, lowest priority first, until what is
     * held fits; pinned blocks (sends in progress) stay until released and evicted later.
     *
     * @return whether what is held fits the new budget now.
     */
    public synchronized boolean budgetBytes(final long bytes)
    {
        if (bytes <= 0)
        {
            throw new IllegalArgumentException("invalid memory budget=" + bytes + " bytes");
        }
        budgetBytes = bytes;
        return makeRoom(0);
    }

    /** Changes the eviction policy at run time: the next eviction ranks blocks by it. */
    public synchronized void policy(final EvictionPolicy next)
    {
        policy = java.util.Objects.requireNonNull(next, "policy");
        floor = 0; // the aging floor belongs to the policy that raised it
    }

    /** Blocks evicted so far. */
    public synchronized long evictions()
    {
        return evictions;
    }

    @Override
    public synchronized MemorySegment get(final BlockId id)
    {
        final Resident r = blocks.get(id);
        if (r == null)
        {
            return null;
        }
        touch(r);
        return r.view;
    }

    /** Like {@link #get} but pins the block until {@link #unpin}; {@code null} if not resident. */
    public synchronized MemorySegment pin(final BlockId id)
    {
        final Resident r = blocks.get(id);
        if (r == null)
        {
            return null;
        }
        touch(r);
        r.pins++;
        return r.view;
    }

    public synchronized void unpin(final BlockId id)
    {
        final Resident r = blocks.get(id);
        if (r == null || r.pins == 0)
        {
            throw new IllegalStateException("unpin of block " + id + " that is not pinned");
        }
        r.pins--;
    }

    public synchronized int pins(final BlockId id)
    {
        final Resident r = blocks.get(id);
        return r == null ? 0 : r.pins;
    }

    /** Records what refetching this block from below costs, for the cost-aware policy. */
    public synchronized void refetchCost(final BlockId id, final double nanosPerMiB)
    {
        final Resident r = blocks.get(id);
        if (r != null)
        {
            r.refetchNanosPerMiB = nanosPerMiB;
        }
    }

    /** The refetch cost recorded for a resident block (0 if none or not resident). */
    public synchronized double refetchCost(final BlockId id)
    {
        final Resident r = blocks.get(id);
        return r == null ? 0 : r.refetchNanosPerMiB;
    }

    @Override
    public boolean put(final BlockId id, final MemorySegment bytes)
    {
        return putAndPin(id, bytes, false) != null;
    }

    /**
     * Stores a block (if absent) and returns its view, pinned when {@code pin} is set; {@code null} when it
     * does not fit.
     */
    public MemorySegment putAndPin(final BlockId id, final MemorySegment bytes, final boolean pin)
    {
        final long size = bytes.byteSize();
        synchronized (this)
        {
            final Resident existing = blocks.get(id);
            if (existing != null)
            {
                touch(existing);
                if (pin)
                {
                    existing.pins++;
                }
                return existing.view;
            }
            if (size > budgetBytes || !makeRoom(size))
            {
                return null;
            }
            usedBytes += size; // reserve before copying outside the lock
        }
        final Arena arena = Arena.ofShared();
        final MemorySegment copy;
        try
        {
            copy = arena.allocate(size, 64);
            MemorySegment.copy(bytes, 0, copy, 0, size);
        }
        catch (final RuntimeException | OutOfMemoryError ex)
        {
            arena.close();
            synchronized (this)
            {
                usedBytes -= size;
            }
            throw ex;
        }
        synchronized (this)
        {
            final Resident raced = blocks.get(id);
            if (raced != null)
            {
                // another thread stored it meanwhile: keep theirs, give back our reservation
                usedBytes -= size;
                arena.close();
                touch(raced);
                if (pin)
                {
                    raced.pins++;
                }
                return raced.view;
            }
            final Resident r = new Resident(arena, copy.asReadOnly());
            touch(r);
            r.pins = pin ? 1 : 0;
            blocks.put(id, r);
            return r.view;
        }
    }

    /** Evicts unpinned blocks, lowest priority first, until {@code size} more bytes fit. Caller holds the lock. */
    private boolean makeRoom(final long size)
    {
        while (usedBytes + size > budgetBytes)
        {
            BlockId victim = null;
            double lowest = Double.POSITIVE_INFINITY;
            for (final Map.Entry<BlockId, Resident> e : blocks.entrySet())
            {
                final Resident r = e.getValue();
                if (r.pins == 0)
                {
                    final double p = policy.priority(
                        new EvictionPolicy.Entry(r.view.byteSize(), r.lastAccess, r.hits, r.refetchNanosPerMiB), floor);
                    if (p < lowest)
                    {
                        lowest = p;
                        victim = e.getKey();
                    }
                }
            }
            if (victim == null)
            {
                return false;
            }
            floor = Math.max(floor, lowest);
            remove(victim);
            evictions++;
        }
        return true;
    }

    private void touch(final Resident r)
    {
        r.lastAccess = ++clock;
        r.hits++;
    }

    private void remove(final BlockId id)
    {
        final Resident r = blocks.remove(id);
        usedBytes -= r.view.byteSize();
        r.arena.close();
    }

    @Override
    public synchronized boolean delete(final BlockId id)
    {
        final Resident r = blocks.get(id);
        if (r == null)
        {
            return false;
        }
        if (r.pins > 0)
        {
            throw new IllegalStateException("block " + id + " is pinned and cannot be deleted");
        }
        remove(id);
        return true;
    }

    @Override
    public synchronized boolean contains(final BlockId id)
    {
        return blocks.containsKey(id);
    }

    @Override
    public synchronized Set<BlockId> ids()
    {
        return new HashSet<>(blocks.keySet());
    }

    @Override
    public synchronized long usedBytes()
    {
        return usedBytes;
    }

    @Override
    public synchronized void close()
    {
        for (final Resident r : blocks.values())
        {
            r.arena.close();
        }
        blocks.clear();
        usedBytes = 0;
    }
}
