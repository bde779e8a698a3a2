package dev.strata.compute.tensor;

import jdk.incubator.vector.FloatVector;

import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * The inner loops of attention over many positions (decode, and every token of a batch-invariant prefill), with the
 * bits of the plain loops they replace: {@link MatOps#dot} per position for the scores, {@link Exp#scalar} and a sum
 * in position order for the softmax, {@link MatOps#axpy} per position for the weighted sum of the values. Only the
 * work around the arithmetic changes: e^x by {@link Exp#of} (lane for lane {@link Exp#scalar}), and the value vectors
 * summed in registers a chunk of the head at a time rather than with a load and a store of the output per position.
 * The caller walks the positions in blocks so that the query heads sharing a key-value head read a block's keys and
 * values from L1 ({@code Llama.attendGroup}).
 */
public final class AttentionOps
{
    /**
     * Off with {@code -Dstrata.attention.blocked=false}: one head at a time over every position with the plain loops
     * (the same bits, for comparison).
     */
    private static final boolean ENABLED = !"false".equals(System.getProperty("strata.attention.blocked"));

    private AttentionOps()
    {
    }

    /** Whether the blocked, grouped attention runs here for heads of {@code headSize}. */
    public static boolean supports(final int headSize)
    {
        return ENABLED && VECTOR_OK && headSize % LANES == 0;
    }

    /**
     * {@code s[so + t] = MatOps.dot(q, qo, k, ko + t * stride, n) * scale} for {@code t} in {@code [0, count)};
     * returns the largest of them (or {@code max} if larger).
     */
    public static float scores(final float[] q, final int qo, final float[] k, final int ko, final int stride,
        final int count, final int n, final float scale, final float[] s, final int so, final float max)
    {
        float m = max;
        for (int t = 0, o = ko; t < count; t++, o += stride)
        {
            final float score = MatOps.dot(q, qo, k, o, n) * scale;
            s[so + t] = score;
            m = Math.max(m, score);
        }
        return m;
    }

    /**
     * {@code s[i] = Exp.scalar(s[i] - max)} for {@code i} in {@code [from, from + n)}, bit for bit; returns their sum,
     * added in order.
     */
    public static float expInPlace(final float[] s, final int from, final int n, final float max)
    {
        int i = from;
        final int end = from + n;
        if (ENABLED && VECTOR_OK)
        {
            final int upper = from + F.loopBound(n);
            for (; i < upper; i += LANES)
            {
                Exp.of(FloatVector.fromArray(F, s, i).sub(max)).intoArray(s, i);
            }
        }
        for (; i < end; i++)
        {
            s[i] = Exp.scalar(s[i] - max);
        }
        float sum = 0f;
        for (int p = from; p < end; p++)
        {
            sum += s[p];
        }
        return sum;
    }

    /**
     * {@code out[oo + i] += w[wo + t] * v[vo + t * stride + i]} for {@code t} in {@code [0, count)} in that order, for
     * every {@code i} in {@code [0, n)}, each step one fused multiply-add as {@link MatOps#axpy} does (same bits as
     * {@code count} calls of it). Needs {@link #supports}{@code (n)}.
     */
    public static void weightedSum(final float[] w, final int wo, final int count, final float[] v, final int vo,
        final int stride, final int n, final float[] out, final int oo)
    {
        for (int i = 0; i < n; i += LANES)
        {
            FloatVector acc = FloatVector.fromArray(F, out, oo + i);
            int o = vo + i;
            for (int t = 0; t < count; t++, o += stride)
            {
                acc = FloatVector.fromArray(F, v, o).fma(FloatVector.broadcast(F, w[wo + t]), acc);
            }
            acc.intoArray(out, oo + i);
        }
    }
}
