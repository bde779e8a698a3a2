package dev.strata.compute.model;

import dev.strata.compute.tensor.Kernels;
import dev.strata.compute.tensor.NativeAttention;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The native attention kernel ({@link NativeAttention}) on a real {@link KvBlockPool}, against a double-precision
 * reference of the same attention (scores, softmax, weighted sum of the values) over the values the pool holds; and
 * its bits: the same for a row whatever share of the key-value heads a call takes.
 */
class NativeAttentionTest
{
    private static NativeAttention kernel()
    {
        final NativeAttention a = Kernels.of("native").attention();
        assumeTrue(a != null, "no native attention on this machine/build (needs the AVX-512 kernel set)");
        return a;
    }

    private static ModelConfig config(final int heads, final int kvHeads, final int headSize)
    {
        return new ModelConfig("llama", heads * headSize, 3, heads, kvHeads, headSize, 64, 100, 4096, 1e-5f, 10000f,
            headSize, ModelConfig.RopeStyle.NORMAL, false, 0, 0);
    }

    @Test
    void shouldMatchADoubleReferenceOnF16AndF32Blocks()
    {
        final NativeAttention a = kernel();
        final Random rnd = new Random(61);
        final List<String> failures = new ArrayList<>();
        // (heads, kv heads, head size): TinyLlama's group of 8 at 64, a group of 1, odd group 3, head sizes 32 and 128
        final int[][] shapes = {{8, 2, 64}, {4, 4, 32}, {6, 2, 128}, {3, 1, 16}};
        for (final int[] shape : shapes)
        {
            final ModelConfig c = config(shape[0], shape[1], shape[2]);
            for (final KvBlockPool.KvType type : KvBlockPool.KvType.values())
            {
                for (final int blockTokens : new int[]{16, 5})
                {
                    for (final int n : new int[]{1, 5, 16, 17, 100, 333})
                    {
                        failures.addAll(check(a, c, type, blockTokens, n, rnd));
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " failures, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    private static List<String> check(final NativeAttention a, final ModelConfig c, final KvBlockPool.KvType type,
        final int blockTokens, final int n, final Random rnd)
    {
        final List<String> failures = new ArrayList<>();
        final int kvDim = c.kvDim();
        final int hs = c.headSize();
        final int group = c.heads() / c.kvHeads();
        final int blocks = (n + blockTokens - 1) / blockTokens;
        try (KvBlockPool pool = new KvBlockPool(c, type, blockTokens,
            (blocks + 3) * KvBlockPool.blockBytes(c, type, blockTokens)))
        {
            // blocks out of order, as a pool hands them out after some churn
            final int[] spare = {pool.allocate(), pool.allocate()};
            final int[] table = new int[blocks];
            for (int b = 0; b < blocks; b++)
            {
                table[b] = pool.allocate();
            }
            pool.release(spare[0]);
            pool.release(spare[1]);
            final float[] k = new float[kvDim];
            final float[] v = new float[kvDim];
            final int layer = c.layers() - 1;
            for (int l = 0; l < c.layers(); l++)
            {
                for (int p = 0; p < n; p++)
                {
                    for (int i = 0; i < kvDim; i++)
                    {
                        // a spread of scores: some positions dominate the softmax, most do not
                        k[i] = (float)rnd.nextGaussian() * (p % 7 == 0 ? 2f : 0.5f);
                        v[i] = (float)rnd.nextGaussian();
                    }
                    pool.write(table[p / blockTokens], l, p % blockTokens, k, 0, v, 0);
                }
            }
            final float[] q = new float[c.qDim()];
            for (int i = 0; i < q.length; i++)
            {
                q[i] = (float)rnd.nextGaussian();
            }
            final float scale = (float)(1.0 / Math.sqrt(hs));
            final float[] out = new float[c.qDim()];
            final float[] scratch = new float[NativeAttention.scratchFloats(c.heads(), n)];
            a.attend(pool.segment(), pool.blockBytes(), table, blockTokens, kvDim, type.bytes(), layer, q, 0, group, 0,
                c.kvHeads(), hs, n, scale, scratch, out, 0);
            final float[] kr = new float[kvDim];
            final float[] vr = new float[kvDim];
            for (int h = 0; h < c.heads(); h++)
            {
                final int ko = (h / group) * hs;
                final double[] s = new double[n];
                double max = Double.NEGATIVE_INFINITY;
                for (int p = 0; p < n; p++)
                {
                    pool.read(table[p / blockTokens], layer, 0, p % blockTokens, 0, kvDim, kr, 0);
                    double dot = 0;
                    for (int i = 0; i < hs; i++)
                    {
                        dot += (double)q[h * hs + i] * kr[ko + i];
                    }
                    s[p] = dot * scale;
                    max = Math.max(max, s[p]);
                }
                double sum = 0;
                for (int p = 0; p < n; p++)
                {
                    s[p] = Math.exp(s[p] - max);
                    sum += s[p];
                }
                final double[] expected = new double[hs];
                for (int p = 0; p < n; p++)
                {
                    pool.read(table[p / blockTokens], layer, 1, p % blockTokens, 0, kvDim, vr, 0);
                    for (int i = 0; i < hs; i++)
                    {
                        expected[i] += s[p] / sum * vr[ko + i];
                    }
                }
                for (int i = 0; i < hs; i++)
                {
                    // float scores and an e^x of about 1 ulp: errors of a few 1e-7 relative to the largest value
                    if (Math.abs(expected[i] - out[h * hs + i]) > 2e-5)
                    {
                        failures.add(c.heads() + "/" + c.kvHeads() + "x" + hs + " " + type + " bt " + blockTokens +
                            " n " + n + " head " + h + " [" + i + "]: " + out[h * hs + i] + " vs " + expected[i]);
                    }
                }
            }
            // the same bits when each call takes one key-value head
            final float[] byHead = new float[c.qDim()];
            for (int kvh = 0; kvh < c.kvHeads(); kvh++)
            {
                a.attend(pool.segment(), pool.blockBytes(), table, blockTokens, kvDim, type.bytes(), layer, q, 0,
                    group, kvh, kvh + 1, hs, n, scale, scratch, byHead, 0);
            }
            for (int i = 0; i < out.length; i++)
            {
                if (Float.floatToRawIntBits(out[i]) != Float.floatToRawIntBits(byHead[i]))
                {
                    failures.add("bits differ by head range at " + i + ": " + out[i] + " vs " + byHead[i]);
                    break;
                }
            }
        }
        return failures;
    }

    @Test
    void shouldRefuseArgumentsOutsideItsTable()
    {
        final NativeAttention a = kernel();
        final ModelConfig c = config(8, 2, 64);
        try (KvBlockPool pool = new KvBlockPool(c, KvBlockPool.KvType.F16, 16,
            4 * KvBlockPool.blockBytes(c, KvBlockPool.KvType.F16, 16)))
        {
            final int[] table = {pool.allocate()};
            final float[] q = new float[c.qDim()];
            final float[] out = new float[c.qDim()];
            final float[] scratch = new float[NativeAttention.scratchFloats(8, 64)];
            // 17 positions need two blocks; a table of one must not be read past
            final IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> a.attend(
                pool.segment(), pool.blockBytes(), table, 16, c.kvDim(), 2, 0, q, 0, 4, 0, 2, 64, 17, 0.125f, scratch,
                out, 0));
            assertTrue(e.getMessage().contains("1 blocks"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> a.attend(pool.segment(), pool.blockBytes(), table, 16,
                c.kvDim(), 2, 0, q, 0, 4, 0, 3, 64, 8, 0.125f, scratch, out, 0), "key-value heads past kvDim");
            a.attend(pool.segment(), pool.blockBytes(), table, 16, c.kvDim(), 2, 0, q, 0, 4, 0, 2, 64, 16, 0.125f,
                scratch, out, 0);
            assertEquals(0f, out[0], 0f, "zero keys and values give zero");
        }
    }
}
