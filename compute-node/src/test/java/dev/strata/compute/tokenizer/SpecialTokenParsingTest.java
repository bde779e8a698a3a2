package dev.strata.compute.tokenizer;

import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Recognising special-token texts in the input (llama.cpp's tokenizer_st_partition). */
class SpecialTokenParsingTest
{
    private static int[] concat(final int[]... parts)
    {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    private static boolean contains(final int[] tokens, final int token)
    {
        return Arrays.stream(tokens).anyMatch(t -> t == token);
    }

    @Test
    void controlTokenTextYieldsItsIdOnlyWhenParsingSpecials()
    {
        final Tokenizer gpt2 = SharedModels.tokenizer(SharedModels.GPT2_VOCAB);
        final String text = "Hello<|endoftext|> world";
        assertEquals(50256, gpt2.encode("<|endoftext|>", false, true)[0]);
        assertArrayEquals(concat(gpt2.encode("Hello", false, false), new int[]{50256}, gpt2.encode(" world", false, false)),
            gpt2.encode(text, false, true));
        final int[] literal = gpt2.encode(text, false, false);
        assertFalse(contains(literal, 50256), "without parseSpecial the text is ordinary text");
        assertEquals(text, gpt2.decode(literal));
    }

    @Test
    void sentencePieceAddsTheDummyPrefixAfterASpecialToken()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        final int hello = spm.encode("Hello", false, false)[0];
        assertEquals("▁Hello", spm.tokenText(hello));
        assertArrayEquals(new int[]{1, hello, 2}, spm.encode("<s>Hello</s>", false, true));
        assertArrayEquals(new int[]{1, 1, hello}, spm.encode("<s>Hello", true, true), "BOS added and BOS parsed");
        assertFalse(contains(spm.encode("<s>Hello</s>", false, false), 2));
    }

    @Test
    void userDefinedTokensAreRecognisedEvenWithoutParsingSpecials()
    {
        final Tokenizer phi3 = SharedModels.tokenizer(SharedModels.PHI3_VOCAB);
        assertEquals("</s>", phi3.tokenText(2));
        assertTrue(contains(phi3.encode("a</s>b", false, false), 2), "</s> is USER_DEFINED in phi-3");
        assertFalse(contains(phi3.encode("a<|user|>b", false, false), 32010), "<|user|> is CONTROL");
        assertTrue(contains(phi3.encode("a<|user|>b", false, true), 32010));
    }

    @Test
    void phi3SpecialTokensSwallowTheWhitespaceAfterThem()
    {
        // llama.cpp gives every phi-3 special token RSTRIP, except <unk>, <s> and <|endoftext|>
        final Tokenizer phi3 = SharedModels.tokenizer(SharedModels.PHI3_VOCAB);
        assertArrayEquals(phi3.encode("<|user|>Hi", false, true), phi3.encode("<|user|> \n Hi", false, true));
        assertFalse(Arrays.equals(phi3.encode("<|endoftext|>Hi", false, true), phi3.encode("<|endoftext|> Hi", false, true)));
    }

    @Test
    void endOfGenerationCoversEosAndTheGuessedTurnEndTokens()
    {
        final Tokenizer phi3 = SharedModels.tokenizer(SharedModels.PHI3_VOCAB);
        assertEquals(32000, phi3.eosToken());
        assertTrue(phi3.isEndOfGeneration(32000), "<|endoftext|> (eos)");
        assertTrue(phi3.isEndOfGeneration(32007), "<|end|>");
        assertFalse(phi3.isEndOfGeneration(32010), "<|user|>");
        assertFalse(phi3.isEndOfGeneration(-1));
        assertFalse(phi3.isEndOfGeneration(phi3.vocabSize()));

        final Tokenizer gpt2 = SharedModels.tokenizer(SharedModels.GPT2_VOCAB);
        assertTrue(gpt2.isEndOfGeneration(50256));
        assertFalse(gpt2.isEndOfGeneration(0));
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        assertTrue(spm.isEndOfGeneration(2));
        assertFalse(spm.isEndOfGeneration(1));
    }
}
