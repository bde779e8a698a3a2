package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The runtime's forward pass against {@link ReferenceLlama} on small synthetic models. */
class ForwardPassTest
{
    private static final SyntheticModel.Shape SHAPE = SyntheticModel.Shape.parse("dim=64,layers=3,heads=4,kv=2,ffn=96");

    @TempDir
    Path dir;

    @ParameterizedTest(name = "{0} {1} batch={2} threads={3}")
    @CsvSource({
        "llama, F32, 1, 1",
        "llama, F32, 4, 2",
        "llama, F16, 7, 2",
        "llama, Q8_0, 16, 2",
        "qwen2, F32, 1, 1",
        "qwen2, Q8_0, 5, 2"})
    void shouldMatchScalarReferenceLogits(final String arch, final GgmlType type, final int batch, final int threads)
        throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        SyntheticModel.write(model, SHAPE, type, null, 3, arch);
        final int[] tokens = {1, 40, 77, 200, 13, 5, 260, 99, 150, 3, 42, 7};
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(threads))
        {
            assertEquals(arch.equals("qwen2"), weights.config().qkvBias());
            final ReferenceLlama reference = new ReferenceLlama(file);
            final double[][] expected = new double[tokens.length][];
            for (int i = 0; i < tokens.length; i++)
            {
                expected[i] = reference.step(tokens[i]);
            }
            final Llama llama = new Llama(weights, pool, batch);
            final KvCache kv = new KvCache(weights.config(), 64);
            // prompt in batches: check the logits of the last token of every batch
            for (int from = 0; from < tokens.length; from += batch)
            {
                final int n = Math.min(batch, tokens.length - from);
                final float[] logits = llama.forward(tokens, from, n, from, kv);
                assertClose(expected[from + n - 1], logits, "position " + (from + n - 1));
            }
        }
    }

    /**
     * Heads of 64 (the blocked prompt attention of {@link PrefillAttention}) over a 300-token prompt: batches that
     * start mid-sequence, end with tokens outside a whole tile, and cross a KV page (256 positions).
     */
    @ParameterizedTest(name = "{0} {1} heads of 64, 300 tokens, batch={2} threads={3}")
    @CsvSource({
        "llama, F32, 64, 2",
        "llama, Q8_0, 37, 1",
        "qwen2, F32, 300, 2"})
    void shouldMatchScalarReferenceOverLongPromptWithWideHeads(final String arch, final GgmlType type,
        final int batch, final int threads) throws Exception
    {
        final Path model = dir.resolve("wide.gguf");
        final int vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=128,layers=2,heads=2,kv=1,ffn=96"),
            type, null, 9, arch);
        final int[] tokens = new int[300];
        for (int i = 0; i < tokens.length; i++)
        {
            tokens[i] = 1 + (i * 37) % (vocab - 1);
        }
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(threads))
        {
            assertEquals(64, weights.config().headSize());
            final ReferenceLlama reference = new ReferenceLlama(file);
            final double[][] expected = new double[tokens.length][];
            for (int i = 0; i < tokens.length; i++)
            {
                expected[i] = reference.step(tokens[i]);
            }
            final Llama llama = new Llama(weights, pool, batch);
            final KvCache kv = new KvCache(weights.config(), tokens.length);
            for (int from = 0; from < tokens.length; from += batch)
            {
                final int n = Math.min(batch, tokens.length - from);
                final float[] logits = llama.forward(tokens, from, n, from, kv);
                assertClose(expected[from + n - 1], logits, "position " + (from + n - 1));
            }
        }
    }

    @ParameterizedTest(name = "mixture of experts {0} batch={1} threads={2}")
    @CsvSource({
        "F32, 1, 1",
        "F32, 5, 2",
        "Q8_0, 3, 2"})
    void shouldMatchScalarReferenceLogitsForMixtureOfExperts(final GgmlType type, final int batch, final int threads)
        throws Exception
    {
        final Path model = dir.resolve("moe.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=64,layers=3,heads=4,kv=2,ffn=96,experts=4,used=2"),
            type, null, 5);
        final int[] tokens = {1, 40, 77, 200, 13, 5, 260, 99, 150, 3, 42, 7};
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(threads))
        {
            assertEquals(4, weights.config().experts());
            assertEquals(2, weights.config().expertsUsed());
            final ReferenceLlama reference = new ReferenceLlama(file);
            final double[][] expected = new double[tokens.length][];
            for (int i = 0; i < tokens.length; i++)
            {
                expected[i] = reference.step(tokens[i]);
            }
            final Llama llama = new Llama(weights, pool, batch);
            final java.util.Set<Integer> routed = new java.util.HashSet<>();
            llama.routingListener((layer, token, experts) ->
            {
                for (final int e : experts)
                {
                    routed.add(e);
                }
            });
            final KvCache kv = new KvCache(weights.config(), 64);
            for (int from = 0; from < tokens.length; from += batch)
            {
                final int n = Math.min(batch, tokens.length - from);
                final float[] logits = llama.forward(tokens, from, n, from, kv);
                assertClose(expected[from + n - 1], logits, "position " + (from + n - 1));
            }
            assertTrue(routed.size() > 2, "tokens are spread over more than the top-2 experts: " + routed);
        }
    }

    @Test
    void shouldGiveSameLogitsForBatchedAndSequentialPrompt() throws Exception
    {
        final Path model = dir.resolve("q.gguf");
        SyntheticModel.write(model, SHAPE, GgmlType.Q4_0, null, 5);
        final int[] tokens = {1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(2))
        {
            final Llama one = new Llama(weights, pool, 1);
            final KvCache kv1 = new KvCache(weights.config(), 32);
            float[] a = null;
            for (int i = 0; i < tokens.length; i++)
            {
                a = one.forward(tokens, i, 1, i, kv1).clone();
            }
            final float[] b = new Llama(weights, pool, tokens.length).forward(tokens, 0, tokens.length, 0,
                new KvCache(weights.config(), 32));
            final double[] expected = new double[a.length];
            for (int i = 0; i < a.length; i++)
            {
                expected[i] = a[i];
            }
            assertClose(expected, b, "batched vs sequential");
        }
    }

    @Test
    void shouldRejectTokenOutsideVocabularyAndContextOverflow() throws Exception
    {
        final Path model = dir.resolve("t.gguf");
        final int vocab = SyntheticModel.write(model, SHAPE, GgmlType.F32, null, 1);
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(1))
        {
            final Llama llama = new Llama(weights, pool, 4);
            final IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> llama.forward(new int[]{vocab}, 0, 1, 0, new KvCache(weights.config(), 8)));
            assertTrue(bad.getMessage().contains("outside the vocabulary"), bad.getMessage());
            final IllegalArgumentException full = assertThrows(IllegalArgumentException.class,
                () -> llama.forward(new int[]{1, 2, 3}, 0, 3, 6, new KvCache(weights.config(), 8)));
            assertTrue(full.getMessage().contains("exceeds the context"), full.getMessage());
        }
    }

    @Test
    void shouldRejectModelWithMissingTensorByName() throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        SyntheticModel.write(model, SHAPE, GgmlType.F32, null, 1);
        // a GGUF with the same metadata but no tensors at all
        final Path empty = dir.resolve("empty.gguf");
        try (GgufFile file = GgufFile.open(model))
        {
            dev.strata.compute.gguf.GgufWriter.write(empty, file.metadata(), java.util.List.of());
        }
        try (GgufFile file = GgufFile.open(empty))
        {
            final GgufFormatException ex = assertThrows(GgufFormatException.class,
                () -> new GgufWeightSource(file, false));
            assertTrue(ex.getMessage().contains("missing tensor token_embd.weight"), ex.getMessage());
        }
    }

    private static void assertClose(final double[] expected, final float[] actual, final String where)
    {
        assertEquals(expected.length, actual.length);
        double scale = 0;
        double worst = 0;
        int argExpected = 0;
        int argActual = 0;
        for (int i = 0; i < expected.length; i++)
        {
            scale = Math.max(scale, Math.abs(expected[i]));
            worst = Math.max(worst, Math.abs(expected[i] - actual[i]));
            argExpected = expected[i] > expected[argExpected] ? i : argExpected;
            argActual = actual[i] > actual[argActual] ? i : argActual;
        }
        assertTrue(worst <= 1e-3 * Math.max(1, scale), where + ": max |diff| " + worst + " for logits up to " + scale);
        assertEquals(argExpected, argActual, where + ": greedy token differs");
    }
}
