package dev.strata.compute.tokenizer;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A 10 KB text made of all the conformance strings round-trips through encode/decode. (Encoding speed is not
 * asserted here: timings belong in benchmarks, not tests.)
 */
class LongTextRoundTripTest
{
    @ParameterizedTest
    @ValueSource(strings = {SharedModels.SPM_VOCAB, SharedModels.GPT2_VOCAB})
    void shouldRoundTripTenKilobytesOfMixedText(final String vocab)
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
        assertEquals(input, tokenizer.decode(tokenizer.encode(input, false, false)), "the long text round-trips");
    }
}
