package dev.strata.tiering;

/**
 * Decides which unpinned block of the {@link MemoryTier} leaves first: the one with the lowest
 * {@link #priority}. Policies are pure functions of an entry's statistics, so they can be tested alone.
 */
public interface EvictionPolicy
{
    /**
     * Statistics of one resident block.
     *
     * @param size               bytes.
     * @param lastAccess         logical time of the last access (a counter, higher is more recent).
     * @param hits               accesses since it entered the tier.
     * @param refetchNanosPerMiB what it costs to bring it back from the tier below (measured by the store).
     */
    record Entry(long size, long lastAccess, long hits, double refetchNanosPerMiB)
    {
    }

    /**
     * @param e     the candidate.
     * @param floor the priority of the last evicted block (lets aging policies inflate new entries).
     * @return the priority: lowest is evicted first.
     */
    double priority(Entry e, double floor);

    /** Least recently used. */
    static EvictionPolicy lru()
    {
        return (e, floor) -> e.lastAccess();
    }

    /** Least frequently used; recency breaks ties. */
    static EvictionPolicy lfu()
    {
        return (e, floor) -> e.hits() * 1e12 + e.lastAccess();
    }

    /**
     * Cost-aware (GreedyDual-Size-Frequency): keeps blocks that are used often and costly to refetch per byte
     * of memory they occupy; {@code floor} ages blocks that stop being used.
     */
    static EvictionPolicy costAware()
    {
        return (e, floor) -> floor + (e.hits() + 1) * Math.max(1.0, e.refetchNanosPerMiB()) * (1 << 20) / e.size();
    }

    /** Parses {@code lru}, {@code lfu} or {@code cost}. */
    static EvictionPolicy named(final String name)
    {
        return switch (name)
        {
            case "lru" -> lru();
            case "lfu" -> lfu();
            case "cost" -> costAware();
            default -> throw new IllegalArgumentException("unknown eviction policy '" + name + "' (lru, lfu, cost)");
        };
    }
}
