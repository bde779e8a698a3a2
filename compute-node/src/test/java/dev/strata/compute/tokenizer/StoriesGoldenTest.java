package dev.strata.compute.tokenizer;

import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The stories260K model's embedded 512-token SentencePiece vocabulary against the golden generation run. */
class StoriesGoldenTest
{
    private static Map<?, ?> golden()
    {
        return (Map<?, ?>)MiniJson.parse(SharedModels.read(SharedModels.GOLDEN));
    }

    @Test
    void promptEncodesWithBosAndDummyPrefixToTheGoldenIds()
    {
        final Map<?, ?> golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final int[] expected = MiniJson.ints(golden.get("prompt_tokens_with_bos"));
        assertArrayEquals(expected, tokenizer.encode((String)golden.get("prompt"), true, false));
        assertEquals(1, tokenizer.bosToken());
        assertEquals(2, tokenizer.eosToken());
        assertEquals(512, tokenizer.vocabSize());
    }

    @Test
    void generatedTokensDecodeToTheGoldenOutputAfterThePrompt()
    {
        final Map<?, ?> golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final String prompt = (String)golden.get("prompt");
        final String stdout = (String)golden.get("stdout");
        assertTrue(stdout.startsWith(prompt), "golden stdout starts with the prompt");
        // the generator (llama2.c run.c) prints a final newline after the last token
        final String expected = stdout.substring(prompt.length());
        final int[] generated = MiniJson.ints(golden.get("generated_tokens"));
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
        final Map<?, ?> golden = golden();
        final Tokenizer tokenizer = SharedModels.tokenizer(SharedModels.STORIES);
        final int[] all = MiniJson.ints(golden.get("all_tokens"));
        final String prompt = (String)golden.get("prompt");
        final String stdout = (String)golden.get("stdout");
        // as in llama.cpp, a leading BOS renders as nothing and the dummy-prefix space after it is kept
        assertEquals(" " + stdout, tokenizer.decode(all) + "\n");
        assertTrue(tokenizer.decode(java.util.Arrays.copyOfRange(all, 1, 5)).equals(prompt));
    }
}
