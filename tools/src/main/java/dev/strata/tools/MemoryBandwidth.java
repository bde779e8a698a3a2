package dev.strata.tools;

import dev.strata.compute.tensor.ThreadPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * Measures the machine's memory read bandwidth the way the roofline needs it: threads sum disjoint parts of an
 * off-heap buffer much larger than the last-level cache, with vector loads; the best of several passes counts.
 */
final class MemoryBandwidth
{
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    /** Keeps the sums observable so the reads cannot be optimised away. */
    static volatile float sink;

    private MemoryBandwidth()
    {
    }

    /** @return bytes per second. */
    static double measure(final ThreadPool pool, final long bytes, final int passes)
    {
        try (Arena arena = Arena.ofShared())
        {
            final MemorySegment seg = arena.allocate(bytes, 64);
            seg.fill((byte)1);
            final int chunks = pool.threads();
            final long per = bytes / chunks / F.vectorByteSize() * F.vectorByteSize();
            final float[] sinks = new float[chunks];
            double best = 0;
            for (int p = 0; p < passes; p++)
            {
                final long t0 = System.nanoTime();
                pool.parallelFor(chunks, (start, end) ->
                {
                    for (int c = start; c < end; c++)
                    {
                        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
                        FloatVector a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
                        final long base = c * per;
                        final int step = F.vectorByteSize();
                        for (long o = base; o + 4L * step <= base + per; o += 4L * step)
                        {
                            a0 = a0.add(FloatVector.fromMemorySegment(F, seg, o, ByteOrder.nativeOrder()));
                            a1 = a1.add(FloatVector.fromMemorySegment(F, seg, o + step, ByteOrder.nativeOrder()));
                            a2 = a2.add(FloatVector.fromMemorySegment(F, seg, o + 2L * step, ByteOrder.nativeOrder()));
                            a3 = a3.add(FloatVector.fromMemorySegment(F, seg, o + 3L * step, ByteOrder.nativeOrder()));
                        }
                        sinks[c] = a0.add(a1).add(a2).add(a3).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
                    }
                });
                final long t1 = System.nanoTime();
                best = Math.max(best, per * (double)chunks * 1e9 / (t1 - t0));
            }
            sink = sinks[0];
            return best;
        }
    }
}
