package dev.strata.compute.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.stream.StreamSupport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The stories260K model's embedded 512-token SentencePiece vocabulary against the golden generation run. */
class StoriesGoldenTest
{
    private static JsonNode golden()
    {
        try
        {
            return new ObjectMapper().readTree(SharedModels.read(SharedModels.GOLDEN));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    private static int[] ints(final JsonNode array)
    {
        return StreamSupport.stream(array.spliterator(), false).mapToInt(JsonNode::intValue).toArray();
    }

    @Test
    void promptEncodesWithBosAndDummyPrefixToTheGoldenIds()
    {
        final JsonNode golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final int[] expected = ints(golden.get("prompt_tokens_with_bos"));
        assertArrayEquals(expected, tokenizer.encode(golden.get("prompt").textValue(), true, false));
        assertEquals(1, tokenizer.bosToken());
        assertEquals(2, tokenizer.eosToken());
        assertEquals(512, tokenizer.vocabSize());
    }

    @Test
    void generatedTokensDecodeToTheGoldenOutputAfterThePrompt()
    {
        final JsonNode golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final String prompt = golden.get("prompt").textValue();
        final String stdout = golden.get("stdout").textValue();
        assertTrue(stdout.startsWith(prompt), "golden stdout starts with the prompt");
        // the generator (llama2.c run.c) prints a final newline after the last token
        final String expected = stdout.substring(prompt.length());
        final int[] generated = ints(golden.get("generated_tokens"));
        assertEquals(expected, tokenizer.decode(generated) + "\n");

        final StreamingDecoder stream = new StreamingDecoder(tokenizer);
        final StringBuilder streamed = new StringBuilder();
        for (final int token : generated)
        {
            streamed.append(stream.accept(token));
        }
        assertEquals(expected, streamed + stream.flush() + "\n");
    }

    @Test
    void allGoldenTokensAreThePromptThenTheGeneration()
    {
        final JsonNode golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final int[] all = ints(golden.get("all_tokens"));
        final String prompt = golden.get("prompt").textValue();
        final String stdout = golden.get("stdout").textValue();
        // as in llama.cpp, a leading BOS renders as nothing and the dummy-prefix space after it is kept
        assertEquals(" " + stdout, tokenizer.decode(all) + "\n");
        assertTrue(tokenizer.decode(java.util.Arrays.copyOfRange(all, 1, 5)).equals(prompt));
    }
}
