package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MemoryTierTest
{
    static MemorySegment block(final long seed, final int size)
    {
        final byte[] b = new byte[size];
        new Random(seed).nextBytes(b);
        return MemorySegment.ofArray(b);
    }

    @Test
    void shouldEvictLeastRecentlyUsedFirst()
    {
        try (MemoryTier tier = new MemoryTier(3 * 1000, EvictionPolicy.lru()))
        {
            final BlockId a = put(tier, 1), b = put(tier, 2), c = put(tier, 3);
            assertNotNull(tier.get(a)); // a is now more recent than b
            final BlockId d = put(tier, 4);
            assertFalse(tier.contains(b), "b was least recently used");
            assertTrue(tier.contains(a) && tier.contains(c) && tier.contains(d));
            assertEquals(1, tier.evictions());
        }
    }

    /** The dashboard's knobs: a smaller budget evicts at once, lowest priority first; a new policy ranks the next. */
    @Test
    void shouldShrinkItsBudgetAndSwitchPolicyWhileRunning()
    {
        try (MemoryTier tier = new MemoryTier(3 * 1000, EvictionPolicy.lru()))
        {
            final BlockId a = put(tier, 1), b = put(tier, 2), c = put(tier, 3);
            for (int i = 0; i < 3; i++)
            {
                tier.get(a); // a: most used, least recently
            }
            tier.get(b);
            tier.get(c);
            assertTrue(tier.budgetBytes(2 * 1000));
            assertFalse(tier.contains(a), "LRU evicts a, the least recently used, to fit 2 blocks");
            assertEquals(2000, tier.usedBytes());
            tier.policy(EvictionPolicy.lfu());
            tier.get(c);
            final BlockId d = put(tier, 4);
            assertFalse(tier.contains(b), "LFU now: b, used least, leaves for d");
            assertTrue(tier.contains(c) && tier.contains(d));
            assertEquals(2000, tier.budgetBytes());
        }
    }

    @Test
    void shouldEvictLeastFrequentlyUsedFirst()
    {
        try (MemoryTier tier = new MemoryTier(3 * 1000, EvictionPolicy.lfu()))
        {
            final BlockId a = put(tier, 1), b = put(tier, 2), c = put(tier, 3);
            for (int i = 0; i < 3; i++)
            {
                tier.get(a);
                tier.get(c);
            }
            tier.get(b); // b: most recent, but least frequent
            put(tier, 4);
            assertFalse(tier.contains(b));
            assertTrue(tier.contains(a) && tier.contains(c));
        }
    }

    @Test
    void shouldKeepBlocksThatAreCostlyToRefetchWithCostAwarePolicy()
    {
        try (MemoryTier tier = new MemoryTier(3 * 1000, EvictionPolicy.costAware()))
        {
            final BlockId cheap = put(tier, 1), costly = put(tier, 2), other = put(tier, 3);
            tier.refetchCost(cheap, 1_000);
            tier.refetchCost(costly, 50_000_000);
            tier.refetchCost(other, 5_000_000);
            tier.get(cheap); // recency alone would keep it
            put(tier, 4);
            assertFalse(tier.contains(cheap), "the cheapest to refetch leaves first");
            assertTrue(tier.contains(costly) && tier.contains(other));
        }
    }

    @Test
    void shouldNeverEvictPinnedBlocksAndRefuseWhenAllArePinned()
    {
        try (MemoryTier tier = new MemoryTier(2 * 1000, EvictionPolicy.lru()))
        {
            final BlockId a = put(tier, 1), b = put(tier, 2);
            assertNotNull(tier.pin(a));
            assertNotNull(tier.pin(b));
            final MemorySegment c = block(3, 1000);
            assertFalse(tier.put(BlockId.of(c), c), "no room: every block is pinned");
            assertTrue(tier.contains(a) && tier.contains(b));
            tier.unpin(a);
            assertTrue(tier.put(BlockId.of(c), c));
            assertFalse(tier.contains(a));
            assertTrue(tier.contains(b));
            assertThrows(IllegalStateException.class, () -> tier.delete(b), "pinned blocks cannot be deleted");
            assertThrows(IllegalStateException.class, () -> tier.unpin(a), "unpin of an absent block");
        }
    }

    @Test
    void shouldRefuseBlockLargerThanBudget()
    {
        try (MemoryTier tier = new MemoryTier(1000, EvictionPolicy.lru()))
        {
            final MemorySegment big = block(1, 1001);
            assertFalse(tier.put(BlockId.of(big), big));
            assertEquals(0, tier.usedBytes());
        }
    }

    @Test
    void shouldReturnReadOnlyViews()
    {
        try (MemoryTier tier = new MemoryTier(1000, EvictionPolicy.lru()))
        {
            final BlockId a = put(tier, 1);
            assertTrue(tier.get(a).isReadOnly());
        }
    }

    @Test
    void shouldStayWithinBudgetUnderConcurrentRandomWorkload() throws Exception
    {
        final long budget = 64 * 1024;
        final List<MemorySegment> blocks = new ArrayList<>();
        for (int i = 0; i < 64; i++)
        {
            blocks.add(block(i, 1024 + 512 * (i % 7)));
        }
        final AtomicLong maxSeen = new AtomicLong();
        try (MemoryTier tier = new MemoryTier(budget, EvictionPolicy.lru()))
        {
            final ExecutorService pool = Executors.newFixedThreadPool(4);
            final List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < 4; t++)
            {
                final int seed = t;
                futures.add(pool.submit(() ->
                {
                    final Random r = new Random(seed);
                    for (int i = 0; i < 5_000; i++)
                    {
                        final MemorySegment s = blocks.get(r.nextInt(blocks.size()));
                        final BlockId id = BlockId.of(s);
                        final MemorySegment view = tier.putAndPin(id, s, true);
                        if (view != null)
                        {
                            // the pinned view holds exactly the block's bytes while we look at it
                            assertEquals(-1, view.mismatch(s));
                            tier.unpin(id);
                        }
                        maxSeen.accumulateAndGet(tier.usedBytes(), Math::max);
                    }
                    return null;
                }));
            }
            for (final Future<?> f : futures)
            {
                f.get(60, TimeUnit.SECONDS);
            }
            pool.shutdown();
            assertTrue(maxSeen.get() <= budget, "used " + maxSeen.get() + " > budget " + budget);
            assertTrue(tier.evictions() > 0);
        }
    }

    private static BlockId put(final MemoryTier tier, final long seed)
    {
        final MemorySegment s = block(seed, 1000);
        final BlockId id = BlockId.of(s);
        assertTrue(tier.put(id, s));
        return id;
    }
}
