package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Llama#execute}: a step of several sequences at different positions (prompt chunks and decode tokens side
 * by side, their KV in interleaved blocks of a {@link KvBlockPool}) gives every sequence the logits of running it
 * alone through {@link Llama#forward} with a {@link KvCache}.
 * <p>
 * Tolerance: with F32 keys and values, the two paths differ only in summation order (the batched classifier and
 * projections run the matrix-matrix kernel, the lone decode the matrix-vector one): 1e-3 of the largest logit.
 * With F16 keys and values, rounding each stored element to 11 significant bits adds up to about 1e-2 of it.
 */
class BatchedForwardTest
{
    @TempDir
    Path dir;

    @ParameterizedTest(name = "{0} weights, {1} KV, {2}, threads={3}")
    @CsvSource({
        "F32, F32, 'dim=64,layers=3,heads=4,kv=2,ffn=96', 1",
        "F32, F32, 'dim=128,layers=2,heads=2,kv=1,ffn=96', 2",
        "Q8_0, F32, 'dim=128,layers=2,heads=2,kv=1,ffn=96', 2",
        "Q4_0, F16, 'dim=64,layers=3,heads=4,kv=2,ffn=96', 2",
        "F32, F16, 'dim=128,layers=2,heads=2,kv=1,ffn=96', 2"})
    void shouldGiveEverySequenceTheLogitsOfRunningItAlone(final GgmlType type, final KvBlockPool.KvType kvType,
        final String shape, final int threads) throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        final int vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse(shape), type, null, 5, "llama");
        final Random random = new Random(11);
        // three sequences: a long prompt cut in chunks, a short one, one of three tokens; then decode tokens
        final int[][] seqs = {tokens(random, vocab, 70), tokens(random, vocab, 19), tokens(random, vocab, 8)};
        final int[] prompt = {50, 11, 3};
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(threads);
            KvBlockPool kv = new KvBlockPool(weights.config(), kvType, 16, 64L << 20))
        {
            final Llama llama = new Llama(weights, pool, 128);
            // reference: each sequence alone, one token at a time, logits at every position
            final float[][][] expected = new float[seqs.length][][];
            for (int s = 0; s < seqs.length; s++)
            {
                final KvCache cache = new KvCache(weights.config(), 128);
                expected[s] = new float[seqs[s].length][];
                for (int p = 0; p < seqs[s].length; p++)
                {
                    expected[s][p] = llama.forward(seqs[s], p, 1, p, cache).clone();
                }
            }
            // block tables, allocated round-robin so that no sequence's blocks are contiguous
            final List<List<Integer>> tables = new ArrayList<>();
            for (int s = 0; s < seqs.length; s++)
            {
                tables.add(new ArrayList<>());
            }
            for (int b = 0; b < 5; b++)
            {
                for (int s = 0; s < seqs.length; s++)
                {
                    if (kv.blocksFor(seqs[s].length) > b)
                    {
                        tables.get(s).add(kv.allocate());
                    }
                }
            }
            final int[] done = new int[seqs.length];
            final float tolerance = kvType == KvBlockPool.KvType.F32 ? 1e-3f : 1e-2f;
            int checked = 0;
            // step plans: rows per sequence per step (0 = not in the step)
            final int[][] plan = {
                {32, 11, 3},  // prefill chunks, one of them partial
                {18, 1, 1},   // rest of the long prompt, decode tokens
                {1, 1, 2},
                {1, 3, 0},
                {4, 1, 1}};
            for (final int[] step : plan)
            {
                final List<ForwardBatch.Segment> segs = new ArrayList<>();
                final int[] tokens = new int[128];
                int row = 0;
                for (int s = 0; s < seqs.length; s++)
                {
                    final int n = step[s];
                    if (n == 0)
                    {
                        continue;
                    }
                    System.arraycopy(seqs[s], done[s], tokens, row, n);
                    segs.add(new ForwardBatch.Segment(row, n, done[s], tables.get(s).stream().mapToInt(i -> i)
                        .toArray(), done[s] + n >= prompt[s] || (s + row) % 2 == 0));
                    row += n;
                }
                final ForwardBatch.Segment[] array = segs.toArray(ForwardBatch.Segment[]::new);
                final float[][] logits = llama.execute(new ForwardBatch(tokens, array), kv);
                int si = 0;
                for (int s = 0; s < seqs.length; s++)
                {
                    if (step[s] == 0)
                    {
                        continue;
                    }
                    final ForwardBatch.Segment seg = array[si];
                    if (seg.logits())
                    {
                        assertClose(expected[s][seg.endPos() - 1], logits[si], tolerance,
                            "sequence " + s + " position " + (seg.endPos() - 1));
                        checked++;
                    }
                    else
                    {
                        assertEquals(null, logits[si]);
                    }
                    done[s] += step[s];
                    si++;
                }
            }
            assertTrue(checked >= 10, "checked " + checked + " logit rows");
        }
    }

    @Test
    void shouldRefuseABlockTableTooShortForTheStep() throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=64,layers=1,heads=4,kv=2,ffn=96"), GgmlType.F32,
            null, 5, "llama");
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(1);
            KvBlockPool kv = new KvBlockPool(weights.config(), KvBlockPool.KvType.F16, 16, 1L << 20))
        {
            final Llama llama = new Llama(weights, pool, 64);
            final ForwardBatch batch = new ForwardBatch(new int[20],
                new ForwardBatch.Segment[] {new ForwardBatch.Segment(0, 20, 0, new int[] {kv.allocate()}, true)});
            final IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> llama.execute(batch, kv));
            assertTrue(e.getMessage().contains("cannot hold 20 positions"), e.getMessage());
        }
    }

    private static int[] tokens(final Random random, final int vocab, final int n)
    {
        final int[] t = new int[n];
        for (int i = 0; i < n; i++)
        {
            t[i] = random.nextInt(vocab);
        }
        return t;
    }

    static void assertClose(final float[] expected, final float[] actual, final float relative, final String what)
    {
        float scale = 0f;
        for (final float e : expected)
        {
            scale = Math.max(scale, Math.abs(e));
        }
        float worst = 0f;
        for (int i = 0; i < expected.length; i++)
        {
            worst = Math.max(worst, Math.abs(expected[i] - actual[i]));
        }
        assertTrue(worst <= relative * scale, what + ": largest difference " + worst + " > " + relative + " x " + scale);
    }
}
