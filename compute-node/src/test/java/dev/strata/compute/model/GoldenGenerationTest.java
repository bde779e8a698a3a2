package dev.strata.compute.model;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.tensor.ThreadPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Greedy generation on the real stories260K model reproduces the golden token ids (from llama2.c's run.c),
 * whatever the prompt batching and thread count.
 */
class GoldenGenerationTest
{
    @ParameterizedTest(name = "batch={0} threads={1}")
    @CsvSource({"1,1", "5,1", "3,2", "128,2"})
    void shouldReproduceGoldenGreedyTokens(final int batch, final int threads) throws Exception
    {
        final Path model = SharedModels.require("stories260K.gguf");
        final Path golden = SharedModels.require("golden-once-upon-a-time.json");
        final int[] prompt = SharedModels.intArray(golden, "prompt_tokens_with_bos");
        final int[] expected = SharedModels.intArray(golden, "generated_tokens");

        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(threads))
        {
            final Llama llama = new Llama(weights, pool, batch);
            final KvCache kv = new KvCache(weights.config(), 512);
            float[] logits = null;
            for (int from = 0; from < prompt.length; from += batch)
            {
                logits = llama.forward(prompt, from, Math.min(batch, prompt.length - from), from, kv);
            }
            final int[] generated = new int[expected.length];
            final int[] one = new int[1];
            for (int i = 0; i < expected.length; i++)
            {
                generated[i] = argmax(logits);
                one[0] = generated[i];
                if (i + 1 < expected.length)
                {
                    logits = llama.forward(one, 0, 1, prompt.length + i, kv);
                }
            }
            assertArrayEquals(expected, generated, () -> "got " + Arrays.toString(generated));
        }
    }

    @Test
    void shouldReadStories260KConfiguration() throws Exception
    {
        try (GgufFile file = GgufFile.open(SharedModels.require("stories260K.gguf"));
            GgufWeightSource weights = new GgufWeightSource(file, false))
        {
            final ModelConfig c = weights.config();
            assertEquals(64, c.dim());
            assertEquals(5, c.layers());
            assertEquals(8, c.heads());
            assertEquals(4, c.kvHeads());
            assertEquals(172, c.ffnDim());
            assertEquals(512, c.vocabSize());
            assertEquals(8, c.headSize());
        }
    }

    static int argmax(final float[] a)
    {
        int best = 0;
        for (int i = 1; i < a.length; i++)
        {
            if (a[i] > a[best])
            {
                best = i;
            }
        }
        return best;
    }
}
