package dev.strata.compute.tokenizer;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Token rendering, decoding, and rejection of ids outside the vocabulary. */
class DecodeTest
{
    @Test
    void idOutsideTheVocabularyIsRejectedWithAClearMessage()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        final IllegalArgumentException tooBig = assertThrows(IllegalArgumentException.class,
            () -> spm.decode(new int[]{15043, 32000}));
        assertTrue(tooBig.getMessage().contains("32000") && tooBig.getMessage().contains("32000 tokens"), tooBig.getMessage());
        assertThrows(IllegalArgumentException.class, () -> spm.decode(new int[]{-1}));
        assertThrows(IllegalArgumentException.class, () -> spm.tokenBytes(40000));
        assertThrows(IllegalArgumentException.class, () -> spm.tokenText(-5));
        assertThrows(IllegalArgumentException.class, () -> new StreamingDecoder(spm).accept(32000));
    }

    @Test
    void sentencePiecePiecesTurnU2581IntoSpaceAndByteTokensIntoBytes()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        assertEquals("<0x0A>", spm.tokenText(13));
        assertArrayEquals(new byte[]{'\n'}, spm.tokenBytes(13));
        assertArrayEquals(" Hello".getBytes(StandardCharsets.UTF_8), spm.tokenBytes(15043));
        assertArrayEquals(new byte[0], spm.tokenBytes(1), "control tokens render as nothing");
        assertArrayEquals(new byte[0], spm.tokenBytes(0), "unknown token renders as nothing");
    }

    @Test
    void byteLevelPiecesMapBackThroughTheGpt2ByteTable()
    {
        final Tokenizer gpt2 = SharedModels.tokenizer(SharedModels.GPT2_VOCAB);
        final int[] world = gpt2.encode(" world", false, false);
        assertEquals(1, world.length);
        assertEquals("Ġworld", gpt2.tokenText(world[0]));
        assertArrayEquals(" world".getBytes(StandardCharsets.UTF_8), gpt2.tokenBytes(world[0]));
        assertArrayEquals(new byte[0], gpt2.tokenBytes(50256));
        assertEquals("\n\t", gpt2.decode(gpt2.encode("\n\t", false, false)));
    }

    @Test
    void sentencePieceDecodeDropsTheDummyPrefixOnlyWhenTextComesFirst()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        assertEquals("Hello", spm.decode(new int[]{15043}));
        // llama_detokenize: a leading BOS renders as nothing but uses up the one-space strip
        assertEquals(" Hello", spm.decode(new int[]{1, 15043}));
        assertEquals(" Hello", spm.decode(spm.encode(" Hello", false, false)));
        assertEquals("", spm.decode(new int[0]));
    }

    @Test
    void byteLevelDecodeKeepsEverySpace()
    {
        final Tokenizer gpt2 = SharedModels.tokenizer(SharedModels.GPT2_VOCAB);
        assertEquals(" Hello ?", gpt2.decode(gpt2.encode(" Hello ?", false, false)), "no clean_up_tokenization_spaces");
    }
}
