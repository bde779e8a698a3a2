package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link MatOps#matmuls} (q/k/v in one parallel loop) and {@link MatOps#swigluProducts} (gate, up and SwiGLU in one):
 * each output against the scalar reference ({@link NativeReference}, SwiGLU in double), and bit for bit against the
 * separate products they replace, on the native kernels (repacked Q4_0, Q8_0, K-quants sharing Q8_K activations, and a
 * Q4_0/Q8_0 mix that cannot share them) and on the Java kernels.
 */
class FusedProductsTest
{
    private static Kernels nativeKernels()
    {
        assumeTrue(NativeKernels.class.getResource(NativeKernels.RESOURCE) != null, "no native library in this build");
        final Kernels k = Kernels.of("native");
        assumeTrue(k.isNative(), k::describe);
        return k;
    }

    /** Matrices of the given types and row counts over {@code cols} columns, prepared for {@code kernels}. */
    private static WeightTensor[] matrices(final Kernels kernels, final Arena arena, final GgmlType[] types,
        final int[] rows, final int cols, final Random rnd, final List<byte[]> data)
    {
        final WeightTensor[] ws = new WeightTensor[types.length];
        for (int i = 0; i < ws.length; i++)
        {
            final byte[] bytes = KernelConformance.randomData(types[i], rows[i], cols, rnd);
            data.add(bytes);
            ws[i] = kernels.prepare(WeightTensor.of("w" + i, types[i], MemorySegment.ofArray(bytes.clone()), rows[i],
                cols), arena);
        }
        return ws;
    }

    @Test
    void shouldGiveEveryMatrixItsOwnProductBitForBit()
    {
        final Kernels kernels = nativeKernels();
        final Random rnd = new Random(71);
        final GgmlType[][] sets = {
            {GgmlType.Q4_0, GgmlType.Q4_0, GgmlType.Q4_0},
            {GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0},
            {GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_K},
            {GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_0}};
        final int[] rows = {5 * 16 + 7, 16 + 3, 40};
        final int cols = 512;
        final List<String> failures = new ArrayList<>();
        try (Arena arena = Arena.ofShared(); ThreadPool pool = new ThreadPool(2))
        {
            for (final Kernels k : new Kernels[]{kernels, Kernels.java()})
            {
                final MatOps ops = new MatOps(pool, k);
                for (final GgmlType[] types : sets)
                {
                    final List<byte[]> data = new ArrayList<>();
                    final WeightTensor[] ws = matrices(k, arena, types, rows, cols, rnd, data);
                    for (final int tokens : new int[]{1, 3, 20})
                    {
                        final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                        final float[][] fused = new float[ws.length][];
                        for (int i = 0; i < ws.length; i++)
                        {
                            fused[i] = new float[tokens * rows[i]];
                        }
                        ops.matmuls(ws, x, tokens, fused);
                        for (int i = 0; i < ws.length; i++)
                        {
                            final float[] alone = new float[tokens * rows[i]];
                            ops.matmul(ws[i], x, tokens, alone);
                            for (int j = 0; j < alone.length; j++)
                            {
                                if (Float.floatToRawIntBits(alone[j]) != Float.floatToRawIntBits(fused[i][j]))
                                {
                                    failures.add(k.name() + " " + types[i] + " matrix " + i + ", " + tokens +
                                        " tokens, index " + j + ": fused " + fused[i][j] + " alone " + alone[j]);
                                }
                            }
                            if (ops.onNativeKernels(ws[i], tokens))
                            {
                                failures.addAll(againstReference(types[i], data.get(i), rows[i], cols, x, tokens,
                                    fused[i], "matrix " + i));
                            }
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " failures, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @Test
    void shouldComputeSwigluOfTheGateAndUpProducts()
    {
        final Kernels kernels = nativeKernels();
        final Random rnd = new Random(73);
        final int ffn = 7 * 16 + 5;
        final int cols = 256;
        final List<String> failures = new ArrayList<>();
        try (Arena arena = Arena.ofShared(); ThreadPool pool = new ThreadPool(2))
        {
            for (final Kernels k : new Kernels[]{kernels, Kernels.java()})
            {
                final MatOps ops = new MatOps(pool, k);
                for (final GgmlType[] types : new GgmlType[][]{{GgmlType.Q4_0, GgmlType.Q4_0},
                    {GgmlType.Q4_K, GgmlType.Q6_K}, {GgmlType.Q8_0, GgmlType.Q4_0}})
                {
                    final List<byte[]> data = new ArrayList<>();
                    final WeightTensor[] ws = matrices(k, arena, types, new int[]{ffn, ffn}, cols, rnd, data);
                    for (final int tokens : new int[]{1, 6})
                    {
                        final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                        final float[] gate = new float[tokens * ffn];
                        final float[] up = new float[tokens * ffn];
                        ops.swigluProducts(ws[0], ws[1], x, tokens, gate, up);
                        final float[] g = new float[tokens * ffn];
                        final float[] u = new float[tokens * ffn];
                        ops.matmul(ws[0], x, tokens, g);
                        ops.matmul(ws[1], x, tokens, u);
                        final float[] expectedUp = u.clone();
                        MatOps.swiglu(g, u, 0, g.length);
                        for (int j = 0; j < g.length; j++)
                        {
                            if (Float.floatToRawIntBits(g[j]) != Float.floatToRawIntBits(gate[j]) ||
                                Float.floatToRawIntBits(expectedUp[j]) != Float.floatToRawIntBits(up[j]))
                            {
                                failures.add(k.name() + " " + types[0] + "/" + types[1] + ", " + tokens + " tokens, " +
                                    "index " + j + ": fused " + gate[j] + " separate " + g[j]);
                            }
                        }
                        if (ops.onNativeKernels(ws[0], tokens) && ops.onNativeKernels(ws[1], tokens))
                        {
                            // SwiGLU of the reference products, in double
                            final float[] refGate = reference(types[0], data.get(0), ffn, cols, x, tokens);
                            final float[] refUp = reference(types[1], data.get(1), ffn, cols, x, tokens);
                            for (int j = 0; j < gate.length; j++)
                            {
                                final double silu = refGate[j] / (1 + Math.exp(-refGate[j]));
                                final double expected = silu * refUp[j];
                                assertEquals(expected, gate[j], 1e-4 * (1 + Math.abs(expected)),
                                    types[0] + "/" + types[1] + " index " + j);
                            }
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " failures, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /** {@code tokens x rows} products of ggml's bytes {@code data} with {@code x}, by the scalar reference. */
    private static float[] reference(final GgmlType type, final byte[] data, final int rows, final int cols,
        final float[] x, final int tokens)
    {
        final float[] out = new float[tokens * rows];
        final int rowBytes = (int)type.byteSize(cols);
        for (int t = 0; t < tokens; t++)
        {
            final NativeReference.Q8 q8 = NativeReference.quantize(type, x, t * cols, cols);
            for (int r = 0; r < rows; r++)
            {
                out[t * rows + r] = (float)NativeReference.dot(type, data, r * rowBytes, cols, q8).value();
            }
        }
        return out;
    }

    private static List<String> againstReference(final GgmlType type, final byte[] data, final int rows,
        final int cols, final float[] x, final int tokens, final float[] got, final String what)
    {
        final List<String> failures = new ArrayList<>();
        final int rowBytes = (int)type.byteSize(cols);
        for (int t = 0; t < tokens; t++)
        {
            final NativeReference.Q8 q8 = NativeReference.quantize(type, x, t * cols, cols);
            for (int r = 0; r < rows; r++)
            {
                final NativeReference.Dot ref = NativeReference.dot(type, data, r * rowBytes, cols, q8);
                final float v = got[t * rows + r];
                if (!(Math.abs(v - ref.value()) <= NativeKernelsTest.RELATIVE * ref.sumOfMagnitudes() + 1e-30))
                {
                    failures.add(type + " " + what + " row " + r + " token " + t + ": " + v + " vs " + ref.value());
                }
            }
        }
        return failures;
    }
}
