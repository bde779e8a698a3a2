package dev.strata.tools;

import dev.strata.compute.tensor.ThreadPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Measures the machine's memory read bandwidth for the roofline: threads sum disjoint parts of an off-heap
 * buffer much larger than the last-level cache, once with vector loads and once with a plain 8-byte loop
 * (which streams faster on some CPUs); the best pass of either counts.
 */
final class MemoryBandwidth
{
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    /** Keeps the sums observable so the reads cannot be optimised away. */
    static volatile double sink;

    private MemoryBandwidth()
    {
    }

    /** @return bytes per second. */
    static double measure(final ThreadPool pool, final long bytes, final int passes)
    {
        try (Arena arena = Arena.ofShared())
        {
            // on the pages the weights get (huge pages unless -Dstrata.hugepages=false): the same limit they meet
            final MemorySegment seg = dev.strata.compute.tensor.HugePages.allocate(arena, bytes);
            seg.fill((byte)1);
            final int chunks = pool.threads();
            final long per = bytes / chunks / 4096 * 4096;
            final double[] sums = new double[chunks];
            // compile both loops before timing: JFR showed timed passes starting interpreted, with the Vector API
            // calls not yet intrinsified
            double warm = 0;
            for (int i = 0; i < 20_000; i++)
            {
                warm += vectorSum(seg, 0, 16 * 1024) + longSum(seg, 0, 16 * 1024);
            }
            sink = warm;
            double best = 0;
            for (int p = 0; p < 2 * passes; p++)
            {
                final boolean vector = p % 2 == 0;
                final long t0 = System.nanoTime();
                pool.parallelFor(chunks, (start, end) ->
                {
                    for (int c = start; c < end; c++)
                    {
                        sums[c] = vector ? vectorSum(seg, c * per, per) : longSum(seg, c * per, per);
                    }
                });
                best = Math.max(best, per * (double)chunks * 1e9 / (System.nanoTime() - t0));
                sink = sums[0];
            }
            return best;
        }
    }

    private static double vectorSum(final MemorySegment seg, final long base, final long per)
    {
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
        FloatVector a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
        final int step = F.vectorByteSize();
        for (long o = base; o + 4L * step <= base + per; o += 4L * step)
        {
            a0 = a0.add(FloatVector.fromMemorySegment(F, seg, o, ByteOrder.nativeOrder()));
            a1 = a1.add(FloatVector.fromMemorySegment(F, seg, o + step, ByteOrder.nativeOrder()));
            a2 = a2.add(FloatVector.fromMemorySegment(F, seg, o + 2L * step, ByteOrder.nativeOrder()));
            a3 = a3.add(FloatVector.fromMemorySegment(F, seg, o + 3L * step, ByteOrder.nativeOrder()));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }

    private static double longSum(final MemorySegment seg, final long base, final long per)
    {
        long s = 0;
        for (long o = base; o < base + per; o += 8)
        {
            s += seg.get(ValueLayout.JAVA_LONG, o);
        }
        return s;
    }
}
