package dev.strata.compute.model;

import dev.strata.compute.tensor.Kernels;
import dev.strata.compute.tensor.NativeAttention;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The native attention kernel ({@link NativeAttention}) on a real {@link KvBlockPool}, against a double-precision
 * reference of the same attention (scores, softmax, weighted sum of the values) over the values the pool holds (for
 * the 8-bit pool, with the query quantized as its definition says); its bits: the same for a row whatever share of
 * the key-value heads a call takes; and the 8-bit pool's attention against the F16 pool's of the same keys and
 * values.
 */
class NativeAttentionTest
{
    private static NativeAttention kernel()
    {
        return kernel("native");
    }

    private static NativeAttention kernel(final String isa)
    {
        final NativeAttention a;
        try
        {
            a = Kernels.of(isa).attention();
        }
        catch (final IllegalArgumentException e)
        {
            assumeTrue(false, "kernel set " + isa + " not on this machine: " + e.getMessage());
            throw e;
        }
        assumeTrue(a != null, "no native attention on this machine/build (needs a native kernel set)");
        return a;
    }

    private static ModelConfig config(final int heads, final int kvHeads, final int headSize)
    {
        return new ModelConfig("llama", heads * headSize, 3, heads, kvHeads, headSize, 64, 100, 4096, 1e-5f, 10000f,
            headSize, ModelConfig.RopeStyle.NORMAL, false, 0, 0);
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldMatchADoubleReferenceOnF16F32AndQ8Blocks(final String isa)
    {
        final NativeAttention a = kernel(isa);
        final Random rnd = new Random(61);
        final List<String> failures = new ArrayList<>();
        // (heads, kv heads, head size): TinyLlama's group of 8 at 64, a group of 1, odd group 3, head sizes 16 to 128
        // (48: a part chunk of the 8-bit kernels' 64 and 32)
        final int[][] shapes = {{8, 2, 64}, {4, 4, 32}, {6, 2, 128}, {3, 1, 16}, {4, 2, 48}};
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
            final float[] scratch = new float[NativeAttention.scratchFloats(c.kvHeads(), group, n)];
            a.attend(pool.segment(), pool.blockBytes(), table, blockTokens, kvDim, type.bytes(), layer, q, 0, group, 0,
                c.kvHeads(), hs, n, scale, scratch, out, 0);
            final float[] kr = new float[kvDim];
            final float[] vr = new float[kvDim];
            for (int h = 0; h < c.heads(); h++)
            {
                final int ko = (h / group) * hs;
                final double[] qh = new double[hs];
                double qmax = 0;
                for (int i = 0; i < hs; i++)
                {
                    qh[i] = q[h * hs + i];
                    qmax = Math.max(qmax, Math.abs(q[h * hs + i]));
                }
                if (type == KvBlockPool.KvType.Q8)
                {
                    // the 8-bit pool's definition quantizes the query as the pool does its keys
                    final float d = (float)qmax / 127f;
                    for (int i = 0; i < hs; i++)
                    {
                        qh[i] = Math.rint(q[h * hs + i] * (1f / d)) * (double)d;
                    }
                }
                final double[] s = new double[n];
                double max = Double.NEGATIVE_INFINITY;
                for (int p = 0; p < n; p++)
                {
                    pool.read(table[p / blockTokens], layer, 0, p % blockTokens, 0, kvDim, kr, 0);
                    double dot = 0;
                    for (int i = 0; i < hs; i++)
                    {
                        dot += qh[i] * kr[ko + i];
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
    void shouldGiveTheSameBitsOverAnEightBitPoolWithAndWithoutVnni()
    {
        final NativeAttention vnni = kernel("avx512vnni");
        final NativeAttention bw = kernel("avx512bw");
        final Random rnd = new Random(71);
        for (final int hs : new int[]{64, 48, 128})
        {
            final ModelConfig c = config(8, 2, hs);
            final int n = 77;
            final int bt = 16;
            final int blocks = (n + bt - 1) / bt;
            try (KvBlockPool pool = new KvBlockPool(c, KvBlockPool.KvType.Q8, bt,
                blocks * KvBlockPool.blockBytes(c, KvBlockPool.KvType.Q8, bt)))
            {
                final int[] table = new int[blocks];
                for (int b = 0; b < blocks; b++)
                {
                    table[b] = pool.allocate();
                }
                final float[] k = new float[c.kvDim()];
                final float[] v = new float[c.kvDim()];
                for (int p = 0; p < n; p++)
                {
                    for (int i = 0; i < k.length; i++)
                    {
                        k[i] = (float)rnd.nextGaussian() * 3;
                        v[i] = (float)rnd.nextGaussian();
                    }
                    pool.write(table[p / bt], 0, p % bt, k, 0, v, 0);
                }
                final float[] q = new float[c.qDim()];
                for (int i = 0; i < q.length; i++)
                {
                    q[i] = (float)rnd.nextGaussian();
                }
                final float[] a = new float[c.qDim()];
                final float[] b = new float[c.qDim()];
                final float[] scratch = new float[NativeAttention.scratchFloats(2, 4, n)];
                vnni.attend(pool.segment(), pool.blockBytes(), table, bt, c.kvDim(), 1, 0, q, 0, 4, 0, 2, hs, n,
                    0.1f, scratch, a, 0);
                bw.attend(pool.segment(), pool.blockBytes(), table, bt, c.kvDim(), 1, 0, q, 0, 4, 0, 2, hs, n, 0.1f,
                    scratch, b, 0);
                for (int i = 0; i < a.length; i++)
                {
                    assertEquals(Float.floatToRawIntBits(a[i]), Float.floatToRawIntBits(b[i]), "head size " + hs +
                        " [" + i + "]: " + a[i] + " vs " + b[i]);
                }
            }
        }
    }

    @Test
    void shouldAttendOverAnEightBitPoolCloseToTheF16Pool()
    {
        // plain keys, and keys with one channel per head 8 times larger (keys after RoPE carry such channels, and the
        // scale of a head must span them): measured 1.4% and 3.4% relative error with a sharp softmax (scores of
        // standard deviation 2), the 8-bit query and keys' rounding noise moving the scores by about 0.015
        assertTrue(q8RelativeError(1f) < 0.02);
        assertTrue(q8RelativeError(8f) < 0.05);
    }

    /** The relative RMS difference of one row's attention over the same keys and values in a Q8 and an F16 pool. */
    private static double q8RelativeError(final float outlier)
    {
        final NativeAttention a = kernel();
        final Random rnd = new Random(67);
        final ModelConfig c = config(8, 2, 64);
        final int n = 300;
        final int bt = 16;
        final int blocks = (n + bt - 1) / bt;
        final int group = 4;
        try (KvBlockPool f16 = new KvBlockPool(c, KvBlockPool.KvType.F16, bt,
            blocks * KvBlockPool.blockBytes(c, KvBlockPool.KvType.F16, bt));
            KvBlockPool q8 = new KvBlockPool(c, KvBlockPool.KvType.Q8, bt,
                blocks * KvBlockPool.blockBytes(c, KvBlockPool.KvType.Q8, bt)))
        {
            assertTrue(q8.blockBytes() * 3 < f16.blockBytes() * 2, "8-bit blocks are near half the size of F16's");
            final int[] table = new int[blocks];
            for (int b = 0; b < blocks; b++)
            {
                table[b] = f16.allocate();
                assertEquals(table[b], q8.allocate());
            }
            final float[] k = new float[c.kvDim()];
            final float[] v = new float[c.kvDim()];
            for (int l = 0; l < c.layers(); l++)
            {
                for (int p = 0; p < n; p++)
                {
                    for (int i = 0; i < k.length; i++)
                    {
                        k[i] = (float)rnd.nextGaussian() * (i % 64 == 3 ? outlier : 1f);
                        v[i] = (float)rnd.nextGaussian();
                    }
                    f16.write(table[p / bt], l, p % bt, k, 0, v, 0);
                    q8.write(table[p / bt], l, p % bt, k, 0, v, 0);
                }
            }
            final float[] q = new float[c.qDim()];
            for (int i = 0; i < q.length; i++)
            {
                q[i] = (float)rnd.nextGaussian() * 2;
            }
            final float[] out16 = new float[c.qDim()];
            final float[] out8 = new float[c.qDim()];
            final float[] scratch = new float[NativeAttention.scratchFloats(2, group, n)];
            a.attend(f16.segment(), f16.blockBytes(), table, bt, c.kvDim(), 2, 1, q, 0, group, 0, 2, 64, n, 0.125f,
                scratch, out16, 0);
            a.attend(q8.segment(), q8.blockBytes(), table, bt, c.kvDim(), 1, 1, q, 0, group, 0, 2, 64, n, 0.125f,
                scratch, out8, 0);
            double err = 0;
            double norm = 0;
            for (int i = 0; i < out16.length; i++)
            {
                err += (out8[i] - out16[i]) * (double)(out8[i] - out16[i]);
                norm += out16[i] * (double)out16[i];
            }
            assertTrue(err > 0, "the 8-bit pool is not the F16 pool");
            return Math.sqrt(err / norm);
        }
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
            final float[] scratch = new float[NativeAttention.scratchFloats(2, 4, 64)];
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
