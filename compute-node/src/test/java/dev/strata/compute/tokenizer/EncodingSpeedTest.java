package dev.strata.compute.tokenizer;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Encoding a few kilobytes takes milliseconds, not seconds (a loose bound: the machine is shared). */
class EncodingSpeedTest
{
    @ParameterizedTest
    @ValueSource(strings = {SharedModels.SPM_VOCAB, SharedModels.GPT2_VOCAB})
    void encodingTenKilobytesIsFast(final String vocab)
    {
        final Tokenizer tokenizer = SharedModels.tokenizer(vocab);
        final String corpus = LlamaCppConformanceTest.cases(vocab).stream()
            .map(LlamaCppConformanceTest.Case::text).collect(Collectors.joining(" "));
        final StringBuilder text = new StringBuilder();
        while (text.length() < 10_000)
        {
            text.append(corpus).append('\n');
        }
        final String input = text.toString();
        for (int i = 0; i < 5; i++)
        {
            tokenizer.encode(input, true, false); // warm up
        }
        final long start = System.nanoTime();
        final int[] tokens = tokenizer.encode(input, true, false);
        final long micros = (System.nanoTime() - start) / 1_000;
        System.out.printf("%s: %d chars -> %d tokens in %.2f ms%n", vocab, input.length(), tokens.length, micros / 1000.0);
        assertTrue(micros < 1_000_000, "encoding " + input.length() + " chars took " + micros / 1000 + " ms");
        assertEquals(input, tokenizer.decode(tokenizer.encode(input, false, false)), "the long text round-trips");
    }
}
