package dev.strata.compute.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The GPT-2 byte-to-unicode map: every byte value gets a printable character so that byte-level BPE can work on
 * strings. Printable Latin-1 bytes ({@code !..~}, {@code ¡..¬}, {@code ®..ÿ}) map to themselves; the other 68
 * bytes map, in increasing byte order, to U+0100, U+0101, ...
 */
final class ByteLevel
{
    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final int[] CHAR_TO_BYTE;

    static
    {
        int next = 256;
        int maxChar = 0;
        for (int b = 0; b < 256; b++)
        {
            final boolean printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            BYTE_TO_CHAR[b] = (char)(printable ? b : next++);
            maxChar = Math.max(maxChar, BYTE_TO_CHAR[b]);
        }
        CHAR_TO_BYTE = new int[maxChar + 1];
        Arrays.fill(CHAR_TO_BYTE, -1);
        for (int b = 0; b < 256; b++)
        {
            CHAR_TO_BYTE[BYTE_TO_CHAR[b]] = b;
        }
    }

    private ByteLevel()
    {
    }

    /** The character standing for one byte. */
    static char encode(final int unsignedByte)
    {
        return BYTE_TO_CHAR[unsignedByte & 0xFF];
    }

    /** Appends the byte-level form of the UTF-8 encoding of {@code codePoints[from..to)}. */
    static void encodeUtf8(final int[] codePoints, final int from, final int to, final StringBuilder out)
    {
        final byte[] utf8 = new String(codePoints, from, to - from).getBytes(StandardCharsets.UTF_8);
        for (final byte b : utf8)
        {
            out.append(encode(b));
        }
    }

    /** The byte a character stands for, or -1 if it is not one of the 256 byte characters. */
    static int decode(final int codePoint)
    {
        return codePoint >= 0 && codePoint < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[codePoint] : -1;
    }

    /**
     * Decodes a byte-level token text back to raw bytes the way llama.cpp's {@code llama_decode_text} does: a code
     * point outside the byte map becomes {@code [UNK_BYTE_0x<its utf-8 hex><whole token text>]}.
     */
    static byte[] decodeText(final String text)
    {
        final ByteArrayOutputStream out = new ByteArrayOutputStream(text.length());
        text.codePoints().forEach(cp ->
        {
            final int b = decode(cp);
            if (b >= 0)
            {
                out.write(b);
            }
            else
            {
                final StringBuilder unk = new StringBuilder("[UNK_BYTE_0x");
                for (final byte u : Character.toString(cp).getBytes(StandardCharsets.UTF_8))
                {
                    unk.append(String.format("%02x", u & 0xFF));
                }
                unk.append(text).append(']');
                out.writeBytes(unk.toString().getBytes(StandardCharsets.UTF_8));
            }
        });
        return out.toByteArray();
    }
}
