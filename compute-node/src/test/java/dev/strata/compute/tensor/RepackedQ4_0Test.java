package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Q4_0 repacked by 16 rows for the native kernels ({@link Q4_0x16Tensor}, {@code mm_q4_0r}), on
 * every instruction set this CPU runs: the layout change is lossless, the products match {@link NativeReference} on
 * the original bytes (as {@link NativeKernelsTest} checks the other kernels), a token's products are the same bits
 * alone and in a batch, and a repacked tensor still works with the Java kernels. Where the CPU runs more than one set,
 * the rows of whole groups get the same bits from each (the same integers, then the same float chain). Skipped where
 * no set can run.
 */
class RepackedQ4_0Test
{
    private static final int GROUP = Q4_0x16Tensor.GROUP;

    /** Every instruction set this CPU runs that repacks Q4_0 (at least one, or the test is skipped). */
    private static List<NativeKernels> sets()
    {
        assumeTrue(NativeKernels.class.getResource(NativeKernels.RESOURCE) != null, "no native library in this build");
        final List<NativeKernels> sets = new ArrayList<>();
        final List<String> why = new ArrayList<>();
        for (final NativeKernels.Isa isa : NativeKernels.Isa.values())
        {
            final Object selected = NativeKernels.select(isa.symbolName);
            if (selected instanceof NativeKernels k && k.repacksQ4_0())
            {
                sets.add(k);
            }
            else
            {
                why.add(isa.symbolName + ": " +
                    (selected instanceof NativeKernels ? "no repacked Q4_0 kernels" : selected));
            }
        }
        assumeTrue(!sets.isEmpty(), () -> "no set repacks Q4_0 here: " + why);
        return sets;
    }

    /** Runs {@code test} on each set of {@link #sets()}, a failure naming the set. */
    private static void forEachSet(final Consumer<NativeKernels> test)
    {
        for (final NativeKernels k : sets())
        {
            try
            {
                test.accept(k);
            }
            catch (final AssertionError e)
            {
                throw new AssertionError(k.isa.symbolName + ": " + e.getMessage(), e);
            }
        }
    }

    /** A repacked copy of {@code data} ({@code rows x cols} Q4_0 in ggml's layout) as a tensor. */
    private static Q4_0x16Tensor repacked(final NativeKernels k, final byte[] data, final int rows, final int cols)
    {
        final byte[] copy = data.clone();
        final MemorySegment s = MemorySegment.ofArray(copy);
        k.repack(s, rows, cols);
        return new Q4_0x16Tensor("w", s, rows, cols);
    }

    @Test
    void shouldRepackLosslesslyAndDequantizeTheSameValues()
    {
        forEachSet(this::shouldRepackLosslesslyAndDequantizeTheSameValues);
    }

    private void shouldRepackLosslesslyAndDequantizeTheSameValues(final NativeKernels k)
    {
        final Random rnd = new Random(41);
        for (final int rows : new int[]{16, 37, 48})
        {
            final int cols = 96;
            final byte[] data = KernelConformance.randomData(GgmlType.Q4_0, rows, cols, rnd);
            final Q4_0x16Tensor w = repacked(k, data, rows, cols);
            final byte[] bytes = w.data().toArray(ValueLayout.JAVA_BYTE);
            // whole groups change, the tail (rows % 16) does not
            final int groupBytes = GROUP * (int)w.rowBytes;
            assertTrue(!Arrays.equals(data, 0, groupBytes, bytes, 0, groupBytes), "the first group was not repacked");
            final int tail = rows / GROUP * groupBytes;
            assertArrayEquals(Arrays.copyOfRange(data, tail, data.length), Arrays.copyOfRange(bytes, tail, data.length));
            final WeightTensor original = WeightTensor.of("w", GgmlType.Q4_0, MemorySegment.ofArray(data), rows, cols);
            final float[] a = new float[cols];
            final float[] b = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                original.dequantizeRow(r, a, 0);
                w.dequantizeRow(r, b, 0);
                assertArrayEquals(a, b, "row " + r + " of " + rows);
                // a column block in the middle
                w.dequantize(r, 32, 64, b, 0);
                assertArrayEquals(Arrays.copyOfRange(a, 32, 96), Arrays.copyOf(b, 64), "row " + r + " cols 32-96");
            }
            k.unpack(w.data(), rows, cols);
            assertArrayEquals(data, w.data().toArray(ValueLayout.JAVA_BYTE), "unpack(repack(w)) == w");
        }
    }

    @Test
    void shouldMatchTheReferenceOnRandomAndAdversarialRows()
    {
        forEachSet(this::shouldMatchTheReferenceOnRandomAndAdversarialRows);
    }

    private void shouldMatchTheReferenceOnRandomAndAdversarialRows(final NativeKernels k)
    {
        final Random rnd = new Random(43);
        final List<String> failures = new ArrayList<>();
        try (Arena arena = Arena.ofConfined())
        {
            for (final int cols : new int[]{32, 96, 64, 576})
            {
                // 1 and 2 groups (and a tail); 9 groups and a tail: a decode step's tile takes several groups at once
                // (groups g, g + part, ...), and the groups left over one at a time
                for (final int rows : new int[]{16, 37, 9 * GROUP + 5})
                {
                    for (final byte[] data : NativeKernelsTest.weightCases(GgmlType.Q4_0, rows, cols, rnd))
                    {
                        for (final float[] x : NativeKernelsTest.adversarialActivations(rnd, cols))
                        {
                            for (final boolean heap : new boolean[]{true, false})
                            {
                                final byte[] packed = repacked(k, data, rows, cols).data()
                                    .toArray(ValueLayout.JAVA_BYTE);
                                final MemorySegment s = heap ? MemorySegment.ofArray(packed)
                                    : KernelConformance.nativeCopy(arena, packed);
                                final WeightTensor w = new Q4_0x16Tensor("w", s, rows, cols);
                                failures.addAll(NativeKernelsTest.check(k, w, GgmlType.Q4_0, data, x, 1, 0, rows));
                                // a range from the second group on (its tail rows in ggml's layout), several tokens:
                                // fewer than one tile of the batched kernel, and more than one
                                failures.addAll(NativeKernelsTest.check(k, w, GgmlType.Q4_0, data,
                                    NativeKernelsTest.tokens(x, 3), 3, GROUP, rows));
                                failures.addAll(NativeKernelsTest.check(k, w, GgmlType.Q4_0, data,
                                    NativeKernelsTest.tokens(x, 11), 11, 0, rows));
                            }
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @Test
    void shouldSumIntegersExactlyWithUnitScales()
    {
        forEachSet(this::shouldSumIntegersExactlyWithUnitScales);
    }

    private void shouldSumIntegersExactlyWithUnitScales(final NativeKernels k)
    {
        final Random rnd = new Random(47);
        final int cols = 32 * 7;
        final int rows = 2 * GROUP + 3;
        final byte[] data = KernelConformance.randomData(GgmlType.Q4_0, rows, cols, rnd);
        final int one = Float.floatToFloat16(1f) & 0xFFFF;
        for (int o = 0; o < data.length; o += Q4_0Tensor.BYTES)
        {
            ScalarReference.putU16(data, o, one);
        }
        final float[] x = new float[cols];
        for (int i = 0; i < cols; i++)
        {
            x[i] = rnd.nextInt(41) - 20;
        }
        for (int b = 0; b < cols; b += 32)
        {
            x[b] = 127;
        }
        final Q4_0x16Tensor w = repacked(k, data, rows, cols);
        final NativeKernels.Activations a = new NativeKernels.Activations();
        a.ensure(1, cols);
        k.quantize(GgmlType.Q4_0, x, cols, 0, 1, a);
        final float[] out = new float[rows];
        k.product(w, 0, rows, a, 1, out, 0, rows);
        final NativeReference.Q8 q8 = NativeReference.quantize(GgmlType.Q4_0, x, 0, cols);
        for (int r = 0; r < rows; r++)
        {
            final double expected = NativeReference.dot(GgmlType.Q4_0, data, r * (int)w.rowBytes, cols, q8).value();
            assertEquals(Math.rint(expected), expected, "the reference is an integer");
            assertEquals(expected, out[r], 0.0, "row " + r);
        }
    }

    /** Batch invariance on the repacked layout, as {@link NativeKernelsTest#shouldGiveATokenTheSameBitsAloneAndInABatch}. */
    @Test
    void shouldGiveATokenTheSameBitsAloneAndInABatch()
    {
        forEachSet(this::shouldGiveATokenTheSameBitsAloneAndInABatch);
    }

    private void shouldGiveATokenTheSameBitsAloneAndInABatch(final NativeKernels k)
    {
        final Random rnd = new Random(53);
        final List<String> failures = new ArrayList<>();
        for (final int cols : new int[]{128, 192, 320})
        {
            // 9 groups and a tail: alone and in batches of 2-3 the groups are taken several at once, from 4 tokens on
            // one at a time (4-8: one tile; more: tiles of 8)
            final int rows = 9 * GROUP + 5;
            final int maxTokens = 70;
            final byte[] data = KernelConformance.randomData(GgmlType.Q4_0, rows, cols, rnd);
            final Q4_0x16Tensor w = repacked(k, data, rows, cols);
            final float[] x = KernelConformance.randomVector(rnd, 0, maxTokens * cols);
            final float[][] alone = new float[maxTokens][rows];
            for (int t = 0; t < maxTokens; t++)
            {
                final NativeKernels.Activations one = new NativeKernels.Activations();
                one.ensure(1, cols);
                k.quantize(GgmlType.Q4_0, Arrays.copyOfRange(x, t * cols, (t + 1) * cols), cols, 0, 1, one);
                k.product(w, 0, rows, one, 1, alone[t], 0, rows);
            }
            for (final int tokens : new int[]{2, 3, 4, 5, 6, 8, 70})
            {
                final NativeKernels.Activations all = new NativeKernels.Activations();
                all.ensure(tokens, cols);
                k.quantize(GgmlType.Q4_0, x, cols, 0, tokens, all);
                final float[] batched = new float[tokens * rows];
                k.product(w, 0, rows, all, tokens, batched, 0, rows);
                for (int t = 0; t < tokens; t++)
                {
                    for (int r = 0; r < rows; r++)
                    {
                        if (Float.floatToRawIntBits(alone[t][r]) != Float.floatToRawIntBits(batched[t * rows + r]))
                        {
                            failures.add("cols " + cols + " batch " + tokens + " row " + r + " token " + t +
                                ": alone " + alone[t][r] + " batched " + batched[t * rows + r]);
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " differences, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /**
     * Where the CPU runs more than one set (VNNI's 512-bit tiles, and AVX-512 BW's and AVX2's two 256-bit halves of a
     * group): the rows of whole groups get the same bits from each, alone and in tiles of several tokens, from the same
     * quantized activations. The rows after the last group are each set's own {@code dot_q4_0} chain and may differ.
     */
    @Test
    void shouldGiveTheSameBitsOnEverySet()
    {
        final List<NativeKernels> sets = sets();
        assumeTrue(sets.size() > 1,
            () -> "only " + sets.get(0).isa.symbolName + " runs here: no second set to compare");
        final Random rnd = new Random(61);
        final int cols = 320;
        final int rows = 9 * GROUP + 5;
        final int groupRows = rows / GROUP * GROUP;
        final byte[] data = KernelConformance.randomData(GgmlType.Q4_0, rows, cols, rnd);
        final List<String> failures = new ArrayList<>();
        for (final int tokens : new int[]{1, 2, 3, 5, 11, 40})
        {
            final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
            final NativeKernels.Activations a = new NativeKernels.Activations();
            a.ensure(tokens, cols);
            sets.get(0).quantize(GgmlType.Q4_0, x, cols, 0, tokens, a);
            final float[][] out = new float[sets.size()][tokens * rows];
            for (int i = 0; i < sets.size(); i++)
            {
                sets.get(i).product(repacked(sets.get(i), data, rows, cols), 0, rows, a, tokens, out[i], 0, rows);
            }
            for (int i = 1; i < sets.size(); i++)
            {
                for (int t = 0; t < tokens; t++)
                {
                    for (int r = 0; r < groupRows; r++)
                    {
                        final float e = out[0][t * rows + r];
                        final float v = out[i][t * rows + r];
                        if (Float.floatToRawIntBits(e) != Float.floatToRawIntBits(v))
                        {
                            failures.add(sets.get(i).isa.symbolName + " against " + sets.get(0).isa.symbolName +
                                ", " + tokens + " tokens, token " + t + " row " + r + ": " + v + " vs " + e);
                        }
                    }
                }
            }
        }
        assertTrue(failures.isEmpty(), () -> failures.size() + " differences, first: " +
            String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    /**
     * Through {@link Kernels#prepare} and {@link MatOps} on two threads (shares of whole 16-row groups): the same
     * products as the ggml-layout tensor within the reference tolerance, whether repacked into a copy (the source is
     * left alone) or in place; and with the Java kernels, a repacked tensor gives the Java products of the original.
     */
    @Test
    void shouldPrepareAndMultiplyThroughMatOps()
    {
        forEachSet(this::shouldPrepareAndMultiplyThroughMatOps);
    }

    private void shouldPrepareAndMultiplyThroughMatOps(final NativeKernels k)
    {
        final Kernels kernels = Kernels.of(k.isa.symbolName);
        final Random rnd = new Random(59);
        final int rows = 5 * GROUP + 7;
        final int cols = 256;
        final byte[] data = KernelConformance.randomData(GgmlType.Q4_0, rows, cols, rnd);
        final WeightTensor original = WeightTensor.of("w", GgmlType.Q4_0,
            MemorySegment.ofArray(data.clone()).asReadOnly(), rows, cols);
        try (Arena arena = Arena.ofShared(); ThreadPool pool = new ThreadPool(2))
        {
            final WeightTensor copy = kernels.prepare(original, arena);
            assertNotSame(original, copy);
            assertArrayEquals(data, original.data().toArray(ValueLayout.JAVA_BYTE), "the source is left alone");
            final byte[] own = data.clone();
            final WeightTensor inPlace = kernels.prepare(WeightTensor.of("w", GgmlType.Q4_0,
                MemorySegment.ofArray(own), rows, cols), null);
            assertTrue(!Arrays.equals(data, own), "repacked in place");
            assertArrayEquals(own, copy.data().toArray(ValueLayout.JAVA_BYTE), "the copy has the in-place bytes");
            assertSame(copy, kernels.prepare(copy, arena), "a repacked tensor is not repacked again");
            assertSame(original, Kernels.java().prepare(original, arena), "the Java kernels keep ggml's layout");

            final MatOps ops = new MatOps(pool, kernels);
            for (final int tokens : new int[]{1, 5, 20})
            {
                final float[] x = KernelConformance.randomVector(rnd, 0, tokens * cols);
                final float[] a = new float[tokens * rows];
                final float[] b = new float[tokens * rows];
                ops.matmul(copy, x, tokens, a);
                ops.matmul(inPlace, x, tokens, b);
                assertArrayEquals(a, b, "copy and in place, " + tokens + " tokens");
                final List<String> failures = new ArrayList<>();
                for (int t = 0; t < tokens; t++)
                {
                    final NativeReference.Q8 q8 = NativeReference.quantize(GgmlType.Q4_0, x, t * cols, cols);
                    for (int r = 0; r < rows; r++)
                    {
                        final NativeReference.Dot ref = NativeReference.dot(GgmlType.Q4_0, data,
                            r * (int)original.rowBytes, cols, q8);
                        if (!(Math.abs(a[t * rows + r] - ref.value()) <= NativeKernelsTest.RELATIVE *
                            ref.sumOfMagnitudes() + 1e-30))
                        {
                            failures.add("token " + t + " row " + r + ": " + a[t * rows + r] + " vs " + ref.value());
                        }
                    }
                }
                assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches, first: " + failures.get(0));

                final MatOps java = new MatOps(pool, Kernels.java());
                final float[] j0 = new float[tokens * rows];
                final float[] j1 = new float[tokens * rows];
                java.matmul(original, x, tokens, j0);
                java.matmul(copy, x, tokens, j1);
                for (int i = 0; i < j0.length; i++)
                {
                    assertEquals(j0[i], j1[i], 1e-4f * (1 + Math.abs(j0[i])), "Java kernels, output " + i);
                }
            }
        }
    }
}
