package dev.strata.compute.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;

import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;

/**
 * The sum of a float vector's lanes in one fixed order, the same in every JIT state.
 * <p>
 * {@code reduceLanes(ADD)} leaves the order of its additions open, and the JDK uses that: its Java fallback (the
 * interpreter and C1) adds the lanes one after another, the C2 intrinsic adds them as a tree, so one reduction gives
 * other bits before and after C2 compiles its caller (measured: 331 of 500 float dot products of 384 values changed
 * bits once compiled). A fresh process then answers a greedy request differently from a warm one, and a request
 * moved to a fresh node after a failover drifts. Here the tree is spelled out in lanewise additions and
 * permutations, each exact, so the interpreted and the compiled forms give the same bits; compiled it is the same
 * shuffle-and-add tree the intrinsic emits.
 */
public final class Lanes
{
    private static final VectorShuffle<Float> XOR8 = VectorShuffle.fromOp(F, i -> (i ^ 8) % LANES);
    private static final VectorShuffle<Float> XOR4 = VectorShuffle.fromOp(F, i -> (i ^ 4) % LANES);
    private static final VectorShuffle<Float> XOR2 = VectorShuffle.fromOp(F, i -> (i ^ 2) % LANES);
    private static final VectorShuffle<Float> XOR1 = VectorShuffle.fromOp(F, i -> (i ^ 1) % LANES);

    private Lanes()
    {
    }

    /**
     * {@code ((l0 + l8) + (l4 + l12)) + ((l2 + l10) + (l6 + l14)) + ...} of a vector of the preferred species
     * (16 lanes; with fewer, the steps that pair lanes beyond them are left out), rounded after every addition.
     */
    public static float sum(final FloatVector v)
    {
        FloatVector s = v;
        if (LANES >= 16)
        {
            s = s.add(s.rearrange(XOR8));
        }
        if (LANES >= 8)
        {
            s = s.add(s.rearrange(XOR4));
        }
        if (LANES >= 4)
        {
            s = s.add(s.rearrange(XOR2));
        }
        if (LANES >= 2)
        {
            s = s.add(s.rearrange(XOR1));
        }
        return s.lane(0);
    }

    /** {@link #sum} spelled out on an array of {@code LANES} values (the independent form, for tests). */
    public static float sumScalar(final float[] lanes)
    {
        final float[] s = lanes.clone();
        for (int step = s.length / 2; step >= 1; step /= 2)
        {
            final float[] next = new float[s.length];
            for (int i = 0; i < s.length; i++)
            {
                next[i] = s[i] + s[i ^ step];
            }
            System.arraycopy(next, 0, s, 0, s.length);
        }
        return s[0];
    }
}
