package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Checks the kernels of {@link WeightTensor} against {@link ScalarReference} on random data. Used in-process by
 * {@link WeightTensorTest} and, through {@link #main}, in child JVMs whose vector width selects other code paths
 * (128-bit vectors make {@code Vectors.VECTOR_OK} false, so the scalar fallbacks run).
 */
final class KernelConformance
{
    static final GgmlType[] TYPES =
        {GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K};
    /** Relative tolerance of a dot product against the double-precision reference. */
    static final double DOT_RELATIVE = 1e-4;
    /** Tolerance relative to the sum of |w * x| (covers cancellation in float accumulation). */
    static final double DOT_ABSOLUTE_SCALE = 1e-5;
    static final int X_OFFSET = 5;
    static final int DST_OFFSET = 3;

    private KernelConformance()
    {
    }

    /** {rows, cols} pairs: several rows, odd block counts, plain-type rows that are not a multiple of 16. */
    static int[][] shapes(final GgmlType type)
    {
        return switch (type)
        {
            case F32, F16, BF16 -> new int[][]{{1, 1}, {3, 172}, {2, 16}, {4, 17}, {5, 33}, {2, 529}, {3, 256}};
            case Q8_0, Q4_0 -> new int[][]{{1, 32}, {3, 96}, {2, 64}, {4, 160}, {1, 224}, {5, 32 * 11}};
            case Q4_K, Q6_K -> new int[][]{{1, 256}, {3, 768}, {2, 512}, {1, 256 * 5}};
            default -> throw new IllegalArgumentException("no shapes for " + type);
        };
    }

    /** Random stored data: random quant bytes with finite f16 scales in [-0.1, 0.1]. */
    static byte[] randomData(final GgmlType type, final int rows, final int cols, final Random rnd)
    {
        final int rowBytes = ScalarReference.rowBytes(type, cols);
        final byte[] b = new byte[rows * rowBytes];
        switch (type)
        {
            case F32 ->
            {
                for (int i = 0; i < rows * cols; i++)
                {
                    final float v = rnd.nextInt(20) == 0 ? 0f : (rnd.nextFloat() * 2f - 1f) * (1 + rnd.nextInt(4));
                    final int bits = Float.floatToRawIntBits(v);
                    ScalarReference.putU16(b, 4 * i, bits & 0xFFFF);
                    ScalarReference.putU16(b, 4 * i + 2, bits >>> 16);
                }
            }
            case F16 ->
            {
                for (int i = 0; i < rows * cols; i++)
                {
                    // every finite half: normals of all exponents, subnormals, signed zeros
                    final int exponent = rnd.nextInt(31);
                    final int bits = (rnd.nextBoolean() ? 0x8000 : 0) | (exponent << 10) | rnd.nextInt(1 << 10);
                    ScalarReference.putU16(b, 2 * i, bits);
                }
            }
            case BF16 ->
            {
                for (int i = 0; i < rows * cols; i++)
                {
                    final int exponent = rnd.nextInt(10) == 0 ? 0 : 100 + rnd.nextInt(40);
                    final int bits = (rnd.nextBoolean() ? 0x8000 : 0) | (exponent << 7) | rnd.nextInt(1 << 7);
                    ScalarReference.putU16(b, 2 * i, bits);
                }
            }
            case Q8_0, Q4_0, Q4_K, Q6_K ->
            {
                rnd.nextBytes(b);
                final int blockBytes = switch (type)
                {
                    case Q8_0 -> ScalarReference.Q8_0_BYTES;
                    case Q4_0 -> ScalarReference.Q4_0_BYTES;
                    case Q4_K -> ScalarReference.Q4_K_BYTES;
                    default -> ScalarReference.Q6_K_BYTES;
                };
                for (int o = 0; o < b.length; o += blockBytes)
                {
                    switch (type)
                    {
                        case Q4_K ->
                        {
                            ScalarReference.putU16(b, o, scale(rnd));
                            ScalarReference.putU16(b, o + 2, scale(rnd));
                        }
                        case Q6_K -> ScalarReference.putU16(b, o + 208, scale(rnd));
                        default -> ScalarReference.putU16(b, o, scale(rnd));
                    }
                }
            }
            default -> throw new IllegalArgumentException("no data for " + type);
        }
        return b;
    }

    private static int scale(final Random rnd)
    {
        return Float.floatToFloat16((rnd.nextFloat() * 2f - 1f) * 0.1f) & 0xFFFF;
    }

    static float[] randomVector(final Random rnd, final int offset, final int n)
    {
        final float[] x = new float[offset + n];
        for (int i = 0; i < x.length; i++)
        {
            x[i] = rnd.nextFloat() * 2f - 1f;
        }
        return x;
    }

    /** A copy of {@code bytes} in a native segment that starts at an odd address, sized exactly. */
    static MemorySegment nativeCopy(final Arena arena, final byte[] bytes)
    {
        final MemorySegment s = arena.allocate(bytes.length + 3L, 16).asSlice(3, bytes.length);
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, s, 0, bytes.length);
        return s;
    }

    /** Every type, every shape, heap and native segments. */
    static List<String> checkAll(final long seed)
    {
        final List<String> failures = new ArrayList<>();
        for (final GgmlType type : TYPES)
        {
            failures.addAll(check(type, seed));
        }
        return failures;
    }

    /** All shapes of one type, with data both on the heap and in native memory. */
    static List<String> check(final GgmlType type, final long seed)
    {
        final List<String> failures = new ArrayList<>();
        final Random rnd = new Random(seed ^ type.ordinal() * 0x9E3779B97F4A7C15L);
        try (Arena arena = Arena.ofConfined())
        {
            for (final int[] shape : shapes(type))
            {
                final int rows = shape[0];
                final int cols = shape[1];
                final byte[] bytes = randomData(type, rows, cols, rnd);
                final WeightTensor heap = WeightTensor.of("heap", type, MemorySegment.ofArray(bytes), rows, cols);
                failures.addAll(checkTensor(heap, bytes, rnd));
                final WeightTensor offHeap = WeightTensor.of("native", type, nativeCopy(arena, bytes), rows, cols);
                failures.addAll(checkTensor(offHeap, bytes, rnd));
            }
        }
        return failures;
    }

    /** Compares every row's {@code dot} and {@code dequantizeRow} with the reference over {@code bytes}. */
    static List<String> checkTensor(final WeightTensor t, final byte[] bytes, final Random rnd)
    {
        final List<String> failures = new ArrayList<>();
        final int cols = t.cols();
        final int rowBytes = ScalarReference.rowBytes(t.type(), cols);
        final String what = t.type() + " " + t.name() + " " + t.rows() + "x" + cols;
        for (int r = 0; r < t.rows(); r++)
        {
            final float[] expected = ScalarReference.dequantizeRow(t.type(), bytes, r * rowBytes, cols);
            final float[] dst = new float[DST_OFFSET + cols + 4];
            java.util.Arrays.fill(dst, Float.NaN);
            t.dequantizeRow(r, dst, DST_OFFSET);
            for (int i = 0; i < dst.length; i++)
            {
                final int j = i - DST_OFFSET;
                if (j < 0 || j >= cols)
                {
                    if (!Float.isNaN(dst[i]))
                    {
                        failures.add(what + " row " + r + ": dequantizeRow wrote outside its range at dst[" + i + "]");
                        break;
                    }
                }
                else if (!(dst[i] == expected[j]))
                {
                    failures.add(what + " row " + r + ": dequantizeRow element " + j + " = " + dst[i] +
                        ", reference " + expected[j]);
                    break;
                }
            }
            final float[] x = randomVector(rnd, X_OFFSET, cols);
            final String error = compareDot(t.dot(r, x, X_OFFSET), expected, x, X_OFFSET);
            if (error != null)
            {
                failures.add(what + " row " + r + ": dot " + error);
            }
        }
        return failures;
    }

    /** Returns null if {@code actual} matches the double dot product of {@code w} and {@code x[xo ..]}. */
    static String compareDot(final float actual, final float[] w, final float[] x, final int xo)
    {
        double sum = 0;
        double abs = 0;
        for (int i = 0; i < w.length; i++)
        {
            final double p = (double)w[i] * x[xo + i];
            sum += p;
            abs += Math.abs(p);
        }
        final double tolerance = DOT_RELATIVE * Math.abs(sum) + DOT_ABSOLUTE_SCALE * abs + 1e-30;
        if (!(Math.abs(actual - sum) <= tolerance))
        {
            return "= " + actual + ", reference " + sum + " (|diff| " + Math.abs(actual - sum) + " > " + tolerance + ")";
        }
        return null;
    }

    /** {@code matmul} (and through it {@code matvec}) against a double triple loop over reference rows. */
    static List<String> checkMatmul(final MatOps ops, final GgmlType type, final int rows, final int cols,
        final int tokens, final Random rnd)
    {
        final List<String> failures = new ArrayList<>();
        final byte[] bytes = randomData(type, rows, cols, rnd);
        final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(bytes), rows, cols);
        final int rowBytes = ScalarReference.rowBytes(type, cols);
        final float[][] dense = new float[rows][];
        for (int r = 0; r < rows; r++)
        {
            dense[r] = ScalarReference.dequantizeRow(type, bytes, r * rowBytes, cols);
        }
        final float[] x = randomVector(rnd, 0, tokens * cols);
        final float[] out = new float[tokens * rows + 3];
        java.util.Arrays.fill(out, Float.NaN);
        ops.matmul(w, x, tokens, out);
        final String what = type + " " + rows + "x" + cols + " tokens=" + tokens + " threads=" + ops.pool().threads();
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                final String error = compareDot(out[t * rows + r], dense[r], x, t * cols);
                if (error != null)
                {
                    failures.add(what + ": out[token " + t + ", row " + r + "] " + error);
                    return failures;
                }
            }
        }
        for (int i = tokens * rows; i < out.length; i++)
        {
            if (!Float.isNaN(out[i]))
            {
                failures.add(what + ": wrote past the result at out[" + i + "]");
            }
        }
        return failures;
    }

    /** Shapes for matmul: rows not a multiple of 4 or of the panel, columns both multiples of 16 and not. */
    static List<String> checkMatmulShapes(final MatOps ops, final long seed)
    {
        final List<String> failures = new ArrayList<>();
        final Random rnd = new Random(seed);
        final Object[][] cases =
        {
            {GgmlType.F32, 7, 172},
            {GgmlType.F32, 18, 64},
            {GgmlType.F16, 5, 64},
            {GgmlType.BF16, 21, 48},
            {GgmlType.Q8_0, 37, 96},
            {GgmlType.Q4_0, 19, 160},
            {GgmlType.Q4_K, 18, 256},
            {GgmlType.Q6_K, 6, 512},
        };
        for (final Object[] c : cases)
        {
            // 2..64 tokens run as dot products (MatOps.matmulDots), more as the blocked product
            for (final int tokens : new int[]{1, 2, 3, 4, 7, 33, 64, 65, 70})
            {
                failures.addAll(checkMatmul(ops, (GgmlType)c[0], (int)c[1], (int)c[2], tokens, rnd));
            }
        }
        return failures;
    }

    /** Runs all checks and exits 0 if they pass; prints the vector configuration first. */
    public static void main(final String[] args)
    {
        System.out.println("LANES=" + Vectors.LANES + " VECTOR_OK=" + Vectors.VECTOR_OK);
        final List<String> failures = new ArrayList<>(checkAll(42));
        try (ThreadPool pool = new ThreadPool(2))
        {
            failures.addAll(checkMatmulShapes(new MatOps(pool, Kernels.java()), 43));
        }
        for (final String f : failures)
        {
            System.out.println("FAIL " + f);
        }
        System.out.println(failures.isEmpty() ? "OK" : failures.size() + " failures");
        System.exit(failures.isEmpty() ? 0 : 1);
    }
}
