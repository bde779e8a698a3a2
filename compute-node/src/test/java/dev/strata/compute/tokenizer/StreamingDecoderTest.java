package dev.strata.compute.tokenizer;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Streaming output holds partial UTF-8 characters back until they complete. */
class StreamingDecoderTest
{
    @Test
    void byteFallbackTokensOfOneCharacterComeOutTogether()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        final int[] tokens = spm.encode("🦙!", false, false);
        assertArrayEquals(new int[]{29871, 243, 162, 169, 156, 29991}, tokens, "▁, four byte tokens, !");
        final StreamingDecoder stream = new StreamingDecoder(spm);
        assertEquals(" ", stream.accept(tokens[0]), "no leading space is stripped while streaming");
        assertEquals("", stream.accept(tokens[1]));
        assertEquals("", stream.accept(tokens[2]));
        assertEquals("", stream.accept(tokens[3]));
        assertTrue(stream.hasPending());
        assertEquals("🦙", stream.accept(tokens[4]));
        assertFalse(stream.hasPending());
        assertEquals("!", stream.accept(tokens[5]));
    }

    @Test
    void byteLevelPiecesOfEmojiStreamToTheWholeText()
    {
        final Tokenizer gpt2 = SharedModels.tokenizer(SharedModels.GPT2_VOCAB);
        final String text = "Hi 🦙🦙 and 😁 ok ½ months";
        final StreamingDecoder stream = new StreamingDecoder(gpt2);
        final StringBuilder out = new StringBuilder();
        for (final int token : gpt2.encode(text, false, false))
        {
            final String piece = stream.accept(token);
            assertFalse(piece.contains("\uFFFD"), "no replacement characters for split characters");
            out.append(piece);
        }
        assertEquals(text, out + stream.flush());
    }

    @Test
    void controlTokensStreamAsNothingAndFlushReplacesAnIncompleteTail()
    {
        final Tokenizer spm = SharedModels.tokenizer(SharedModels.SPM_VOCAB);
        final StreamingDecoder stream = new StreamingDecoder(spm);
        assertEquals("", stream.accept(1));
        assertEquals("", stream.accept(243)); // <0xF0>, first byte of a 4-byte character
        assertEquals("\uFFFD", stream.flush());
        assertFalse(stream.hasPending());
        assertEquals("\uFFFD", stream.accept(162), "a stray continuation byte is replaced at once");
    }
}
