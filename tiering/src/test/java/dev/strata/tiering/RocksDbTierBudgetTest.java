package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The SSD tier's byte budget holds under a concurrent random workload of puts, gets and deletes. */
class RocksDbTierBudgetTest
{
    @TempDir
    Path dir;

    @Test
    void shouldNeverExceedBudgetUnderConcurrentRandomWorkload() throws Exception
    {
        final long budget = 8L << 20;
        final List<MemorySegment> blocks = new ArrayList<>();
        for (int i = 0; i < 48; i++)
        {
            blocks.add(MemoryTierTest.block(100 + i, (256 << 10) + (i % 5) * (192 << 10)));
        }
        final AtomicLong maxSeen = new AtomicLong();
        try (RocksDbTier tier = new RocksDbTier(dir.resolve("ssd"), budget))
        {
            final ExecutorService pool = Executors.newFixedThreadPool(4);
            final List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < 4; t++)
            {
                final int seed = t;
                futures.add(pool.submit(() ->
                {
                    final Random r = new Random(seed);
                    for (int i = 0; i < 300; i++)
                    {
                        final MemorySegment s = blocks.get(r.nextInt(blocks.size()));
                        final BlockId id = BlockId.of(s);
                        switch (r.nextInt(4))
                        {
                            case 0, 1 -> tier.put(id, s);
                            case 2 ->
                            {
                                final MemorySegment got = tier.get(id);
                                assertTrue(got == null || got.mismatch(s) == -1, "a read returns the stored bytes");
                            }
                            default -> tier.delete(id);
                        }
                        maxSeen.accumulateAndGet(tier.usedBytes(), Math::max);
                    }
                    return null;
                }));
            }
            for (final Future<?> f : futures)
            {
                f.get(120, TimeUnit.SECONDS);
            }
            pool.shutdown();
            assertTrue(maxSeen.get() <= budget, "used " + maxSeen.get() + " > budget " + budget);
            assertTrue(tier.evictions() > 0, "the workload was large enough to force evictions");
        }
    }
}
