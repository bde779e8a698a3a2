package dev.strata.compute.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Objects;

/**
 * Turns generated tokens into text as they arrive, returning only complete UTF-8 characters: a character whose
 * bytes are spread over several tokens (byte-fallback {@code <0xE2><0x96><0x81>}, or byte-level BPE pieces of an
 * emoji) is held back until its last byte arrives.
 * <p>
 * Pieces are those of {@link Tokenizer#tokenBytes(int)}, like llama.cpp's streaming output
 * ({@code llama_token_to_piece} with {@code lstrip = 0}): no leading space is ever stripped here, since the first
 * generated token continues the prompt. Control tokens contribute nothing. Bytes that can never form a valid
 * character come out as U+FFFD. Not thread-safe: use one decoder per generation stream.
 */
public final class StreamingDecoder
{
    private final Tokenizer tokenizer;
    private byte[] pending = new byte[8];
    private int pendingLength;

    /** A decoder for the tokens of one generation stream. */
    public StreamingDecoder(final Tokenizer tokenizer)
    {
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
    }

    /**
     * Adds one token and returns the text it completes (possibly empty).
     *
     * @throws IllegalArgumentException if the id is not in the vocabulary.
     */
    public String accept(final int token)
    {
        final byte[] piece = tokenizer instanceof VocabTokenizer vt ? vt.piece(token) : tokenizer.tokenBytes(token);
        if (pendingLength + piece.length > pending.length)
        {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + piece.length));
        }
        System.arraycopy(piece, 0, pending, pendingLength, piece.length);
        pendingLength += piece.length;
        return take(completeLength());
    }

    /** Returns whatever is held back, incomplete sequences as U+FFFD, and resets the decoder. */
    public String flush()
    {
        return take(pendingLength);
    }

    /** Whether bytes of an incomplete character are held back. */
    public boolean hasPending()
    {
        return pendingLength > 0;
    }

    private String take(final int length)
    {
        if (length == 0)
        {
            return "";
        }
        final String text = new String(pending, 0, length, StandardCharsets.UTF_8);
        System.arraycopy(pending, length, pending, 0, pendingLength - length);
        pendingLength -= length;
        return text;
    }

    /** Length of the pending prefix that holds no incomplete trailing UTF-8 sequence. */
    private int completeLength()
    {
        // find the last byte that is not a continuation byte (10xxxxxx), looking back at most 3 bytes
        final int limit = Math.max(0, pendingLength - 4);
        for (int i = pendingLength - 1; i >= limit; i--)
        {
            final int b = pending[i] & 0xFF;
            if ((b & 0xC0) != 0x80)
            {
                return i + sequenceLength(b) > pendingLength ? i : pendingLength;
            }
        }
        return pendingLength; // only continuation bytes: nothing can complete them
    }

    /** Bytes in the UTF-8 sequence a lead byte starts; 1 for bytes that cannot lead one. */
    private static int sequenceLength(final int lead)
    {
        if (lead >= 0xC2 && lead <= 0xDF)
        {
            return 2;
        }
        if (lead >= 0xE0 && lead <= 0xEF)
        {
            return 3;
        }
        if (lead >= 0xF0 && lead <= 0xF4)
        {
            return 4;
        }
        return 1;
    }
}
