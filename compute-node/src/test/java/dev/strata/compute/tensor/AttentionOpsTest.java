package dev.strata.compute.tensor;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link AttentionOps} against the plain loops whose bits it must keep: {@link Exp#scalar} with a sum in order,
 * {@link MatOps#axpy} per position. Values of mixed magnitudes and signs, so that another order of additions would
 * show in the bits.
 */
class AttentionOpsTest
{
    private static float[] values(final Random r, final int n)
    {
        final float[] x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (float)(r.nextGaussian() * Math.pow(10, r.nextInt(7) - 3));
        }
        return x;
    }

    @Test
    void shouldExponentiateLaneForLaneAsTheScalarCodeAndSumInOrder()
    {
        final Random r = new Random(3);
        for (int n = 1; n < 200; n += 7)
        {
            final float[] s = values(r, n + 3);
            final float[] expected = s.clone();
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < n; i++)
            {
                max = Math.max(max, s[i]);
            }
            float sum = 0f;
            for (int i = 0; i < n; i++)
            {
                expected[i] = Exp.scalar(expected[i] - max);
                sum += expected[i];
            }
            assertEquals(Float.floatToRawIntBits(sum), Float.floatToRawIntBits(AttentionOps.expInPlace(s, 0, n, max)));
            for (int i = 0; i < s.length; i++)
            {
                assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(s[i]), "n " + n + " i " + i);
            }
        }
    }

    @Test
    void shouldSumWeightedValuesWithTheBitsOfOneAxpyPerPosition()
    {
        final int lanes = MatOps.KERNEL_LANES;
        assumeTrue(lanes > 0 && AttentionOps.supports(lanes), "this machine runs the plain attention loops");
        final Random r = new Random(8);
        for (int round = 0; round < 500; round++)
        {
            final int hs = lanes * (1 + r.nextInt(8));
            final int count = 1 + r.nextInt(300);
            final int stride = hs + lanes * r.nextInt(3);
            final int vo = r.nextInt(5);
            final int wo = r.nextInt(4);
            final int oo = r.nextInt(6);
            final float[] v = values(r, vo + count * stride + hs);
            final float[] w = values(r, wo + count);
            final float[] out = values(r, oo + hs + 2);
            final float[] expected = out.clone();
            for (int t = 0; t < count; t++)
            {
                MatOps.axpy(w[wo + t], v, vo + t * stride, expected, oo, hs);
            }
            AttentionOps.weightedSum(w, wo, count, v, vo, stride, hs, out, oo);
            for (int i = 0; i < out.length; i++)
            {
                assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(out[i]),
                    "round " + round + " element " + i);
            }
        }
    }
}
