package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every native kernel set this CPU can run, against {@link NativeReference}: the quantized activations bit for bit,
 * the products exactly where every float step is exact (unit scales, integer activations) and otherwise within
 * {@value #RELATIVE} of the sum of the magnitudes of the scaled products (the kernels add partial sums in float in
 * other orders, some per lane before the block sum, as ggml's SIMD kernels do).
 * Skipped where the jar has no library (built without a C compiler).
 */
class NativeKernelsTest
{
    static final double RELATIVE = 2e-6;
    static final GgmlType[] TYPES = {GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K};

    private static NativeKernels kernels(final String isa)
    {
        final boolean built = NativeKernels.class.getResource(NativeKernels.RESOURCE) != null;
        assumeTrue(built, "no native library in this build");
        final Object selected = NativeKernels.select(isa);
        assumeTrue(selected instanceof NativeKernels, () -> isa + ": " + selected);
        return (NativeKernels)selected;
    }

    @Test
    void shouldLoadTheBestKernelSetWhereTheLibraryWasBuilt()
    {
        final boolean built = NativeKernels.class.getResource(NativeKernels.RESOURCE) != null;
        assumeTrue(built, "no native library in this build");
        final Kernels k = Kernels.of("native");
        assertTrue(k.isNative(), k::describe);
        assertTrue(k.describe().startsWith("native "), k::describe);
    }

    @Test
    void shouldUseJavaKernelsWhenAskedTo()
    {
        final Kernels k = Kernels.of("java");
        assertFalse(k.isNative());
        assertEquals("java", k.name());
        assertTrue(k.nativeFor(GgmlType.Q4_0) == null);
    }

    @Test
    void shouldRejectAnUnknownKernelSet()
    {
        assertThrows(IllegalArgumentException.class, () -> Kernels.of("sse9"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldQuantizeActivationsBitExactly(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(3);
        for (final GgmlType type : TYPES)
        {
            for (final float[] x : adversarialActivations(rnd, 768))
            {
                final int tokens = 2;
                final float[] two = new float[2 * x.length];
                System.arraycopy(x, 0, two, 0, x.length);
                for (int i = 0; i < x.length; i++)
                {
                    two[x.length + i] = -x[x.length - 1 - i] * 0.37f;
                }
                final NativeKernels.Activations a = new NativeKernels.Activations();
                a.ensure(tokens, x.length);
                k.quantize(type, two, x.length, 0, tokens, a);
                for (int t = 0; t < tokens; t++)
                {
                    final NativeReference.Q8 ref = NativeReference.quantize(type, two, t * x.length, x.length);
                    final int blocks = ref.d().length;
                    final int auxes = ref.aux().length;
                    assertArrayEquals(ref.qs(), Arrays.copyOfRange(a.qs(), t * x.length, (t + 1) * x.length),
                        type + " qs, token " + t);
                    assertArrayEquals(ref.d(), Arrays.copyOfRange(a.d(), t * blocks, (t + 1) * blocks),
                        type + " d, token " + t);
                    assertArrayEquals(ref.aux(), Arrays.copyOfRange(a.aux(), t * auxes, (t + 1) * auxes),
                        type + " aux, token " + t);
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldMatchTheReferenceOnRandomAndAdversarialRows(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(11);
        final List<String> failures = new ArrayList<>();
        try (Arena arena = Arena.ofConfined())
        {
            for (final GgmlType type : TYPES)
            {
                if (!k.supports(type))
                {
                    continue;
                }
                for (final int cols : type.blockSize() == 256 ? new int[]{256, 768, 512} : new int[]{32, 96, 64, 128, 576})
                {
                    final int rows = 11;
                    for (final byte[] data : weightCases(type, rows, cols, rnd))
                    {
                        for (final float[] x : adversarialActivations(rnd, cols))
                        {
                            for (final boolean heap : new boolean[]{true, false})
                            {
                                final MemorySegment s = heap ? MemorySegment.ofArray(data)
                                    : KernelConformance.nativeCopy(arena, data);
                                final WeightTensor w = WeightTensor.of("w", type, s, rows, cols);
                                failures.addAll(check(k, w, data, x, 1, 0, rows));
                                // an odd range starting at an odd row, several tokens (the batched kernels: groups
                                // of 4 rows and the rows left)
                                failures.addAll(check(k, w, data, tokens(x, 3), 3, 1, rows - 2));
                                failures.addAll(check(k, w, data, tokens(x, 2), 2, 2, 8));
                            }
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldMatchTheReferenceForMoreTokensThanOneBatchedBlock(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(13);
        final List<String> failures = new ArrayList<>();
        for (final GgmlType type : TYPES)
        {
            final int cols = type.blockSize() == 256 ? 512 : 192;
            final int rows = 10;
            final byte[] data = KernelConformance.randomData(type, rows, cols, rnd);
            final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), rows, cols);
            final float[] x = KernelConformance.randomVector(rnd, 0, 67 * cols);
            failures.addAll(check(k, w, data, x, 67, 0, rows));
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /**
     * Batch invariance: a token's products are the same bits whether it is computed alone or among many tokens
     * (prefill), so a request prefilled again elsewhere (a failover) continues with the tokens it would have had.
     * Column counts with a block count that is and is not a multiple of four, rows that fill and do not fill the
     * batched kernel's groups of four; for the K-quants, token counts that fill and do not fill a tile.
     */
    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldGiveATokenTheSameBitsAloneAndInABatch(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(29);
        final List<String> failures = new ArrayList<>();
        for (final GgmlType type : new GgmlType[]{GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K})
        {
            // the K-quants' super-blocks are 256 wide; 70 tokens are 17 tiles of 4 and one of 2
            final boolean k256 = type == GgmlType.Q4_K || type == GgmlType.Q6_K;
            for (final int cols : k256 ? new int[]{256, 768} : new int[]{128, 192, 320})
            {
                final int rows = 11;
                final int tokens = 70;
                final byte[] data = KernelConformance.randomData(type, rows, cols, rnd);
                final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), rows, cols);
                final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                final NativeKernels.Activations all = new NativeKernels.Activations();
                all.ensure(tokens, cols);
                k.quantize(type, x, cols, 0, tokens, all);
                final float[] batched = new float[tokens * rows];
                k.product(w, 0, rows, all, tokens, batched, 0, rows);
                for (int t = 0; t < tokens; t++)
                {
                    final NativeKernels.Activations one = new NativeKernels.Activations();
                    one.ensure(1, cols);
                    k.quantize(type, java.util.Arrays.copyOfRange(x, t * cols, (t + 1) * cols), cols, 0, 1, one);
                    final float[] alone = new float[rows];
                    k.product(w, 0, rows, one, 1, alone, 0, rows);
                    for (int r = 0; r < rows; r++)
                    {
                        if (Float.floatToRawIntBits(alone[r]) != Float.floatToRawIntBits(batched[t * rows + r]))
                        {
                            failures.add(type + " cols " + cols + " row " + r + " token " + t + ": alone " + alone[r] +
                                " batched " + batched[t * rows + r]);
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " differences, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldMatchTheReferenceForF16(final String isa)
    {
        final NativeKernels k = kernels(isa);
        assumeTrue(k.supports(GgmlType.F16));
        final Random rnd = new Random(19);
        final List<String> failures = new ArrayList<>();
        for (final int cols : new int[]{1, 17, 33, 64, 529})
        {
            final int rows = 11;
            final byte[] data = KernelConformance.randomData(GgmlType.F16, rows, cols, rnd);
            final WeightTensor w = WeightTensor.of("w", GgmlType.F16, MemorySegment.ofArray(data), rows, cols);
            for (final int tokens : new int[]{1, 3, 8})
            {
                final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                final int stride = rows + 1;
                final float[] out = new float[2 + tokens * stride];
                k.productFloat(w, 1, rows - 1, x, tokens, out, 2, stride);
                for (int t = 0; t < tokens; t++)
                {
                    for (int r = 1; r < rows - 1; r++)
                    {
                        final float[] row = ScalarReference.dequantizeRow(GgmlType.F16, data, r * 2 * cols, cols);
                        double ref = 0;
                        double magnitude = 0;
                        for (int i = 0; i < cols; i++)
                        {
                            ref += (double)row[i] * x[t * cols + i];
                            magnitude += Math.abs((double)row[i] * x[t * cols + i]);
                        }
                        final float got = out[2 + t * stride + r - 1];
                        if (!(Math.abs(got - ref) <= 1e-6 * magnitude + 1e-30))
                        {
                            failures.add("F16 " + cols + " cols, row " + r + " token " + t + ": " + got + " vs " + ref);
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /**
     * The panel kernel computes each (row, token) as the Java blocked product's lane does: a chain from zero, one FMA
     * per k in k order, over F32 or F16 weights read in place. Shapes give every tail of rows (1-5) and of token
     * vectors (1-3) on one instruction set or another, and k over several blocks of 256 with a partial last one.
     */
    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldComputePanelsAsTheJavaLanesDo(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(29);
        final List<String> failures = new ArrayList<>();
        int shapes = 0;
        for (final GgmlType type : new GgmlType[]{GgmlType.F32, GgmlType.F16})
        {
            assertTrue(k.panelsInPlace(type), type.name());
            for (final int[] shape : new int[][]{{64, 768, 128}, {13, 300, 48}, {11, 513, 80}, {9, 257, 96},
                {8, 1000, 40}})
            {
                final int rows = shape[0];
                final int cols = shape[1];
                final int tp = shape[2];
                if (!k.supportsPanels(tp))
                {
                    continue;
                }
                shapes++;
                final int r0 = 3;
                final byte[] data = KernelConformance.randomData(type, r0 + rows, cols, rnd);
                final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), r0 + rows, cols);
                final float[] xt = KernelConformance.randomVector(rnd, 0, cols * tp);
                final float[] acc = new float[rows * tp];
                k.panel(w, r0, rows, xt, tp, acc);
                final float[] row = new float[cols];
                for (int i = 0; i < rows; i++)
                {
                    w.dequantizeRow(r0 + i, row, 0);
                    for (int t = 0; t < tp; t++)
                    {
                        float c = 0f;
                        for (int j = 0; j < cols; j++)
                        {
                            c = Math.fma(xt[j * tp + t], row[j], c);
                        }
                        if (Float.floatToRawIntBits(c) != Float.floatToRawIntBits(acc[i * tp + t]))
                        {
                            failures.add(type + " " + rows + "x" + cols + " tp " + tp + " row " + i + " token " + t +
                                ": " + acc[i * tp + t] + " vs " + c);
                        }
                    }
                }
            }
        }
        assertTrue(shapes >= 8, "shapes run: " + shapes);
        assertTrue(failures.isEmpty(), () -> failures.size() + " differences, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /**
     * The batched F16 product runs each (row, token) through the single-token chain: whole tiles, the rows and tokens
     * left after them (every tail of 1 to 5 rows and of 1 to 3 tokens on one instruction set or another), and rows long
     * enough that the kernel splits rows, tokens and k into cache-sized blocks (k in blocks of 2,048 with the pairs'
     * accumulators kept between them).
     */
    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldGiveAnF16TokenTheSameBitsAloneAndInABatch(final String isa)
    {
        final NativeKernels k = kernels(isa);
        assumeTrue(k.supportsBatched(GgmlType.F16));
        final Random rnd = new Random(23);
        final List<String> failures = new ArrayList<>();
        for (final int[] shape : new int[][]{{13, 17, 5}, {9, 64, 14}, {40, 4113, 50}, {7, 2100, 7}, {11, 100, 9}, {8, 40, 3}})
        {
            final int rows = shape[0];
            final int cols = shape[1];
            final int tokens = shape[2];
            final byte[] data = KernelConformance.randomData(GgmlType.F16, rows, cols, rnd);
            final WeightTensor w = WeightTensor.of("w", GgmlType.F16, MemorySegment.ofArray(data), rows, cols);
            final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
            final float[] batched = new float[tokens * rows];
            k.productFloat(w, 1, rows, x, tokens, batched, 1, rows);
            k.productFloat(w, 0, 1, x, tokens, batched, 0, rows);
            for (int t = 0; t < tokens; t++)
            {
                final float[] alone = new float[rows];
                k.productFloat(w, 0, rows, Arrays.copyOfRange(x, t * cols, (t + 1) * cols), 1, alone, 0, rows);
                for (int r = 0; r < rows; r++)
                {
                    if (Float.floatToRawIntBits(alone[r]) != Float.floatToRawIntBits(batched[t * rows + r]))
                    {
                        failures.add("F16 " + rows + "x" + cols + " row " + r + " token " + t + " of " + tokens +
                            ": alone " + alone[r] + " batched " + batched[t * rows + r]);
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " differences, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @ParameterizedTest
    @ValueSource(strings = {"avx512vnni", "avx512bw", "avx2"})
    void shouldSumIntegersExactlyWithUnitScales(final String isa)
    {
        final NativeKernels k = kernels(isa);
        final Random rnd = new Random(5);
        for (final GgmlType type : TYPES)
        {
            if (!k.supports(type))
            {
                continue;
            }
            final int cols = type.blockSize() == 256 ? 512 : 32 * 7;
            final int rows = 5;
            final byte[] data = unitScaleWeights(type, rows, cols, rnd);
            // integer activations whose block maximum is 127 (Q8_0) or whose largest magnitude is -127 (Q8_K):
            // the activation scale is then exactly 1 and every product, sum and scale step exact
            final float[] x = new float[cols];
            for (int i = 0; i < cols; i++)
            {
                x[i] = rnd.nextInt(41) - 20;
            }
            for (int b = 0; b < cols; b += type.blockSize())
            {
                x[b] = type.blockSize() == 256 ? -127 : 127;
            }
            final WeightTensor w = WeightTensor.of("w", type, MemorySegment.ofArray(data), rows, cols);
            final NativeKernels.Activations a = new NativeKernels.Activations();
            a.ensure(1, cols);
            k.quantize(type, x, cols, 0, 1, a);
            final float[] out = new float[rows];
            k.product(w, 0, rows, a, 1, out, 0, rows);
            final NativeReference.Q8 q8 = NativeReference.quantize(type, x, 0, cols);
            for (int r = 0; r < rows; r++)
            {
                final double expected = NativeReference.dot(type, data, r * (int)w.rowBytes, cols, q8).value();
                assertEquals(Math.rint(expected), expected, type + ": the reference is an integer");
                assertEquals(expected, out[r], 0.0, type + " row " + r);
            }
        }
    }

    private static List<String> check(final NativeKernels k, final WeightTensor w, final byte[] data,
        final float[] x, final int tokens, final int r0, final int r1)
    {
        return check(k, w, w.type(), data, x, tokens, r0, r1);
    }

    /**
     * Rows {@code [r0, r1)} of {@code w}'s native product with {@code tokens} rows of activations against the scalar
     * reference of {@code type} over ggml's bytes {@code data} (the layout {@code w} may have repacked): the failures.
     */
    static List<String> check(final NativeKernels k, final WeightTensor w, final GgmlType type, final byte[] data,
        final float[] x, final int tokens, final int r0, final int r1)
    {
        final List<String> failures = new ArrayList<>();
        final int cols = w.cols();
        final NativeKernels.Activations a = new NativeKernels.Activations();
        a.ensure(tokens, cols);
        k.quantize(type, x, cols, 0, tokens, a);
        final int stride = r1 - r0 + 2;
        final float[] out = new float[1 + tokens * stride];
        k.product(w, r0, r1, a, tokens, out, 1, stride);
        for (int t = 0; t < tokens; t++)
        {
            final NativeReference.Q8 q8 = NativeReference.quantize(type, x, t * cols, cols);
            for (int r = r0; r < r1; r++)
            {
                final NativeReference.Dot ref = NativeReference.dot(type, data, r * (int)w.rowBytes, cols, q8);
                final float got = out[1 + t * stride + r - r0];
                if (!(Math.abs(got - ref.value()) <= RELATIVE * ref.sumOfMagnitudes() + 1e-30))
                {
                    failures.add(type + " " + w.rows() + "x" + cols + " row " + r + " token " + t + " of " + tokens + ": " + got +
                        " vs " + ref.value() + " (sum of |terms| " + ref.sumOfMagnitudes() + ")");
                }
            }
        }
        return failures;
    }

    /** {@code tokens} rows of activations derived from {@code x}, each different. */
    static float[] tokens(final float[] x, final int tokens)
    {
        final float[] all = new float[tokens * x.length];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < x.length; i++)
            {
                all[t * x.length + i] = x[(i + 7 * t) % x.length] * (t + 1);
            }
        }
        return all;
    }

    /** Random activations, all at one positive value, all at one negative value, zeros, and mixed magnitudes. */
    static List<float[]> adversarialActivations(final Random rnd, final int n)
    {
        final List<float[]> cases = new ArrayList<>();
        cases.add(KernelConformance.randomVector(rnd, 0, n));
        final float[] max = new float[n];
        Arrays.fill(max, 3.5f);
        cases.add(max);
        final float[] min = new float[n];
        Arrays.fill(min, -1e4f);
        cases.add(min);
        cases.add(new float[n]);
        final float[] mixed = new float[n];
        for (int i = 0; i < n; i++)
        {
            // half-way points of the rounding, tiny values next to large ones, blocks of zeros
            mixed[i] = switch (i % 7)
            {
                case 0 -> 127f;
                case 1 -> -0.5f;
                case 2 -> 1e-7f;
                case 3 -> (i / 32) % 3 == 0 ? 0f : -63.5f;
                default -> (rnd.nextFloat() - 0.5f) * 100f;
            };
        }
        cases.add(mixed);
        return cases;
    }

    /** Random rows, then all-max quants, all-min quants and zero scales (whole rows of each). */
    static List<byte[]> weightCases(final GgmlType type, final int rows, final int cols, final Random rnd)
    {
        final List<byte[]> cases = new ArrayList<>();
        cases.add(KernelConformance.randomData(type, rows, cols, rnd));
        for (final int fill : new int[]{0xFF, 0x00, 0x80})
        {
            final byte[] b = KernelConformance.randomData(type, rows, cols, rnd);
            forEachBlock(type, b, (o, scaleOffsets, quantFrom, quantTo) ->
            {
                for (int i = quantFrom; i < quantTo; i++)
                {
                    b[o + i] = (byte)fill;
                }
            });
            cases.add(b);
        }
        final byte[] zero = KernelConformance.randomData(type, rows, cols, rnd);
        forEachBlock(type, zero, (o, scaleOffsets, quantFrom, quantTo) ->
        {
            for (final int s : scaleOffsets)
            {
                ScalarReference.putU16(zero, o + s, 0);
            }
        });
        cases.add(zero);
        return cases;
    }

    /** Weights with f16 scales of 1 (and small K-quant sub-scales, so that no float step rounds). */
    private static byte[] unitScaleWeights(final GgmlType type, final int rows, final int cols, final Random rnd)
    {
        final byte[] b = KernelConformance.randomData(type, rows, cols, rnd);
        final int one = Float.floatToFloat16(1f) & 0xFFFF;
        forEachBlock(type, b, (o, scaleOffsets, quantFrom, quantTo) ->
        {
            for (final int s : scaleOffsets)
            {
                ScalarReference.putU16(b, o + s, one);
            }
            if (type == GgmlType.Q4_K)
            {
                for (int i = 4; i < 16; i++)
                {
                    b[o + i] &= 0x03;
                }
            }
            else if (type == GgmlType.Q6_K)
            {
                for (int i = 192; i < 208; i++)
                {
                    b[o + i] = (byte)(rnd.nextInt(7) - 3);
                }
            }
        });
        return b;
    }

    @FunctionalInterface
    private interface BlockVisitor
    {
        void visit(int offset, int[] scaleOffsets, int quantFrom, int quantTo);
    }

    private static void forEachBlock(final GgmlType type, final byte[] b, final BlockVisitor visitor)
    {
        final int blockBytes = type.typeSize();
        for (int o = 0; o < b.length; o += blockBytes)
        {
            switch (type)
            {
                case Q4_0, Q8_0 -> visitor.visit(o, new int[]{0}, 2, blockBytes);
                case Q4_K -> visitor.visit(o, new int[]{0, 2}, 16, blockBytes);
                case Q6_K -> visitor.visit(o, new int[]{208}, 0, 192);
                default -> throw new IllegalArgumentException(type.name());
            }
        }
    }
}
