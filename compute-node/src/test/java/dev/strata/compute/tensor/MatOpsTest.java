package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

@Timeout(value = 120, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class MatOpsTest
{
    private static void assertNoFailures(final List<String> failures)
    {
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @Test
    void matmulShouldMatchDoubleTripleLoopOnOneThread()
    {
        try (ThreadPool pool = new ThreadPool(1))
        {
            assertNoFailures(KernelConformance.checkMatmulShapes(new MatOps(pool, Kernels.java()), 1));
        }
    }

    @Test
    void matmulShouldMatchDoubleTripleLoopOnTwoThreads()
    {
        try (ThreadPool pool = new ThreadPool(2))
        {
            final MatOps ops = new MatOps(pool, Kernels.java());
            for (int seed = 1; seed <= 3; seed++)
            {
                assertNoFailures(KernelConformance.checkMatmulShapes(ops, seed));
            }
        }
    }

    /**
     * With batch invariance on (the engines of split nodes), every product of several tokens gives each token the bits
     * it gets alone, for every type the native kernels take, in decode-sized batches and prompts, alone and fused
     * (QKV): a request moved to another node is prefilled again with the tokens it had, whose keys and values must be
     * those of its decode steps.
     */
    @Test
    void batchInvariantProductsShouldGiveATokenItsBitsAlone()
    {
        final Kernels natives = Kernels.of("native");
        assumeTrue(natives.isNative(), "no native kernels on this machine");
        final Random rnd = new Random(43);
        try (ThreadPool pool = new ThreadPool(2))
        {
            final MatOps ops = new MatOps(pool, natives);
            ops.batchInvariant(true);
            for (final GgmlType type : new GgmlType[]{GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K,
                GgmlType.F16})
            {
                final int rows = 70;
                final int cols = 512;
                final WeightTensor w = WeightTensor.of("w", type,
                    MemorySegment.ofArray(KernelConformance.randomData(type, rows, cols, rnd)), rows, cols);
                final WeightTensor v = WeightTensor.of("v", type,
                    MemorySegment.ofArray(KernelConformance.randomData(type, 37, cols, rnd)), 37, cols);
                for (final int tokens : new int[]{3, 64, 65, 130})
                {
                    final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                    final float[] a = new float[tokens * rows];
                    ops.matmul(w, x, tokens, a);
                    final float[][] fused = {new float[tokens * rows], new float[tokens * 37]};
                    ops.matmuls(new WeightTensor[]{w, v}, x, tokens, fused);
                    final float[] alone = new float[rows];
                    final float[] aloneV = new float[37];
                    for (int t = 0; t < tokens; t++)
                    {
                        final float[] xt = Arrays.copyOfRange(x, t * cols, (t + 1) * cols);
                        ops.matvec(w, xt, alone);
                        ops.matvec(v, xt, aloneV);
                        for (int r = 0; r < rows; r++)
                        {
                            final int rr = r;
                            final int tt = t;
                            assertEquals(Float.floatToRawIntBits(alone[r]), Float.floatToRawIntBits(a[t * rows + r]),
                                () -> type + ", " + tokens + " tokens: token " + tt + " row " + rr +
                                    " differs from alone");
                            assertEquals(Float.floatToRawIntBits(alone[r]),
                                Float.floatToRawIntBits(fused[0][t * rows + r]),
                                () -> type + ", " + tokens + " tokens fused: token " + tt + " row " + rr + " differs");
                        }
                        for (int r = 0; r < 37; r++)
                        {
                            final int rr = r;
                            final int tt = t;
                            assertEquals(Float.floatToRawIntBits(aloneV[r]),
                                Float.floatToRawIntBits(fused[1][t * 37 + r]),
                                () -> type + ", " + tokens + " tokens fused, second matrix: token " + tt +
                                    " row " + rr);
                        }
                    }
                }
            }
        }
    }

    /**
     * A K-quant prompt runs on the native batched integer kernel, which gives each token the bits it gets alone, with
     * or without batch invariance (prompts of one tile and of many, rows that fill and do not fill a row block).
     */
    @Test
    void kQuantPromptsShouldGiveEachTokenItsBitsAlone()
    {
        final Kernels natives = Kernels.of("native");
        assumeTrue(natives.isNative(), "no native kernels on this machine");
        final Random rnd = new Random(43);
        try (ThreadPool pool = new ThreadPool(2))
        {
            final MatOps ops = new MatOps(pool, natives);
            for (final GgmlType type : new GgmlType[]{GgmlType.Q4_K, GgmlType.Q6_K})
            {
                for (final int[] shape : new int[][]{{70, 512, 3}, {131, 1024, 130}})
                {
                    final int rows = shape[0];
                    final int cols = shape[1];
                    final int tokens = shape[2];
                    final byte[] data = KernelConformance.randomData(type, rows, cols, rnd);
                    final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), rows, cols);
                    assertTrue(ops.onNativeKernels(w, tokens), type + " prompt on the native kernels");
                    final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                    final float[] a = new float[tokens * rows];
                    ops.matmul(w, x, tokens, a);
                    final float[] alone = new float[rows];
                    for (int t = 0; t < tokens; t++)
                    {
                        ops.matvec(w, Arrays.copyOfRange(x, t * cols, (t + 1) * cols), alone);
                        for (int r = 0; r < rows; r++)
                        {
                            final int tt = t;
                            final int rr = r;
                            assertEquals(Float.floatToRawIntBits(alone[r]), Float.floatToRawIntBits(a[t * rows + r]),
                                () -> type + " " + rows + "x" + cols + " x " + tokens + " tokens: token " + tt +
                                    " row " + rr + " differs from the token alone");
                        }
                    }
                }
            }
        }
    }

    /**
     * A prompt's product gives the same bits with native kernels (their panel kernel: F32 weights in place, the other
     * float-activation types from dequantized column blocks) as with the Java kernels, which run the same chains; with
     * batch invariance on, an F16 prompt instead gives each token the bits it gets alone.
     */
    @Test
    void nativePanelsShouldGiveTheJavaBlockedProductsBits()
    {
        final Kernels natives = Kernels.of("native");
        assumeTrue(natives.isNative(), "no native kernels on this machine");
        final Random rnd = new Random(41);
        try (ThreadPool pool = new ThreadPool(2))
        {
            final MatOps nativeOps = new MatOps(pool, natives);
            final MatOps javaOps = new MatOps(pool, Kernels.java());
            for (final GgmlType type : new GgmlType[]{GgmlType.F32, GgmlType.F16, GgmlType.BF16})
            {
                for (final int[] shape : new int[][]{{70, 512, 65}, {131, 1024, 130}})
                {
                    final int rows = shape[0];
                    final int cols = shape[1];
                    final int tokens = shape[2];
                    final byte[] data = KernelConformance.randomData(type, rows, cols, rnd);
                    final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), rows, cols);
                    final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                    final float[] a = new float[tokens * rows];
                    final float[] b = new float[tokens * rows];
                    nativeOps.matmul(w, x, tokens, a);
                    javaOps.matmul(w, x, tokens, b);
                    for (int i = 0; i < a.length; i++)
                    {
                        assertEquals(Float.floatToRawIntBits(b[i]), Float.floatToRawIntBits(a[i]),
                            () -> type + " " + rows + "x" + cols + " x " + tokens + " tokens differ");
                    }
                    if (type == GgmlType.F16)
                    {
                        nativeOps.batchInvariant(true);
                        nativeOps.matmul(w, x, tokens, a);
                        nativeOps.batchInvariant(false);
                        final float[] alone = new float[rows];
                        for (int t = 0; t < tokens; t++)
                        {
                            nativeOps.matvec(w, Arrays.copyOfRange(x, t * cols, (t + 1) * cols), alone);
                            for (int r = 0; r < rows; r++)
                            {
                                assertEquals(Float.floatToRawIntBits(alone[r]), Float.floatToRawIntBits(a[t * rows + r]),
                                    () -> "batch-invariant F16 " + rows + "x" + cols + " differs from a token alone");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void matvecShouldMatchDoubleLoopForEveryType()
    {
        final Random rnd = new Random(17);
        for (final int threads : new int[]{1, 2})
        {
            try (ThreadPool pool = new ThreadPool(threads))
            {
                final MatOps ops = new MatOps(pool, Kernels.java());
                for (final GgmlType type : KernelConformance.TYPES)
                {
                    final int cols = type.blockSize() == 256 ? 512 : type.blockSize() == 32 ? 160 : 172;
                    final int rows = 13;
                    final byte[] bytes = KernelConformance.randomData(type, rows, cols, rnd);
                    final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(bytes), rows, cols);
                    final float[] x = KernelConformance.randomVector(rnd, 0, cols);
                    final float[] out = new float[rows];
                    ops.matvec(w, x, out);
                    for (int r = 0; r < rows; r++)
                    {
                        final float[] dense = ScalarReference.dequantizeRow(type, bytes,
                            r * ScalarReference.rowBytes(type, cols), cols);
                        assertNull(KernelConformance.compareDot(out[r], dense, x, 0),
                            type + " row " + r + " threads " + threads);
                    }
                }
            }
        }
    }

    @Test
    void matmulShouldAgreeWithRepeatedMatvec()
    {
        final Random rnd = new Random(23);
        try (ThreadPool pool = new ThreadPool(2))
        {
            final MatOps ops = new MatOps(pool, Kernels.java());
            final int rows = 35;
            final int cols = 96;
            final int tokens = 7;
            final byte[] bytes = KernelConformance.randomData(GgmlType.Q8_0, rows, cols, rnd);
            final WeightTensor w = WeightTensor.of("w", GgmlType.Q8_0, MemorySegment.ofArray(bytes), rows, cols);
            final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
            final float[] batched = new float[tokens * rows];
            ops.matmul(w, x, tokens, batched);
            for (int t = 0; t < tokens; t++)
            {
                final float[] xt = java.util.Arrays.copyOfRange(x, t * cols, (t + 1) * cols);
                final float[] single = new float[rows];
                ops.matvec(w, xt, single);
                for (int r = 0; r < rows; r++)
                {
                    assertEquals(single[r], batched[t * rows + r], 1e-4f * (1 + Math.abs(single[r])),
                        "token " + t + " row " + r);
                }
            }
        }
    }

    @Test
    void dotAndAxpyShouldMatchScalarLoops()
    {
        final Random rnd = new Random(29);
        for (final int n : new int[]{0, 1, 15, 16, 17, 100, 172})
        {
            final float[] a = KernelConformance.randomVector(rnd, 3, n);
            final float[] b = KernelConformance.randomVector(rnd, 1, n);
            double expected = 0;
            for (int i = 0; i < n; i++)
            {
                expected += (double)a[3 + i] * b[1 + i];
            }
            assertEquals(expected, MatOps.dot(a, 3, b, 1, n), 1e-5 * (1 + n), "dot n=" + n);
            final float[] y = b.clone();
            MatOps.axpy(0.5f, a, 3, y, 1, n);
            assertEquals(b[0], y[0], "axpy must not touch y before yo");
            for (int i = 0; i < n; i++)
            {
                assertEquals(b[1 + i] + 0.5f * a[3 + i], y[1 + i], 1e-6f, "axpy n=" + n + " i=" + i);
            }
        }
    }
}
