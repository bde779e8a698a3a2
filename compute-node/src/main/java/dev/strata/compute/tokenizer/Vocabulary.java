package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * The token list of a GGUF vocabulary: texts, scores, attributes and the text-to-id index.
 * <p>
 * An empty token text is replaced by {@code [EMPTY_<id>]}, as llama.cpp does; two tokens with the same text
 * are rejected (llama.cpp aborts on them).
 */
final class Vocabulary
{
    static final String KEY_TOKENS = "tokenizer.ggml.tokens";
    static final String KEY_SCORES = "tokenizer.ggml.scores";
    static final String KEY_TOKEN_TYPE = "tokenizer.ggml.token_type";

    private final String[] texts;
    private final float[] scores;
    private final int[] attrs;
    private final Map<String, Integer> ids;

    private Vocabulary(final String[] texts, final float[] scores, final int[] attrs)
    {
        this.texts = texts;
        this.scores = scores;
        this.attrs = attrs;
        this.ids = new HashMap<>(texts.length * 2);
        for (int i = 0; i < texts.length; i++)
        {
            final Integer previous = ids.put(texts[i], i);
            if (previous != null)
            {
                throw new IllegalArgumentException("vocabulary has two tokens with the text '" + texts[i] + "': ids " +
                    previous + " and " + i);
            }
        }
    }

    /** Reads {@code tokenizer.ggml.tokens}, {@code .scores} (default 0) and {@code .token_type} (default NORMAL). */
    static Vocabulary fromGguf(final GgufMetadata md)
    {
        if (!md.contains(KEY_TOKENS))
        {
            throw new IllegalArgumentException("GGUF metadata has no " + KEY_TOKENS + ": cannot build a tokenizer");
        }
        final String[] raw = md.getStringArray(KEY_TOKENS);
        final int n = raw.length;
        final String[] texts = new String[n];
        for (int i = 0; i < n; i++)
        {
            texts[i] = raw[i].isEmpty() ? "[EMPTY_" + i + "]" : raw[i];
        }
        final float[] scores = md.contains(KEY_SCORES) ? md.getFloatArray(KEY_SCORES) : new float[n];
        checkLength(KEY_SCORES, scores.length, n);
        final int[] attrs = new int[n];
        if (md.contains(KEY_TOKEN_TYPE))
        {
            final int[] types = md.getIntArray(KEY_TOKEN_TYPE);
            checkLength(KEY_TOKEN_TYPE, types.length, n);
            for (int i = 0; i < n; i++)
            {
                attrs[i] = TokenAttr.fromType(types[i]);
            }
        }
        else
        {
            Arrays.fill(attrs, TokenAttr.NORMAL);
        }
        return new Vocabulary(texts, scores, attrs);
    }

    private static void checkLength(final String key, final int length, final int tokens)
    {
        if (length != tokens)
        {
            throw new IllegalArgumentException(key + " has " + length + " entries but the vocabulary has " + tokens +
                " tokens");
        }
    }

    int size()
    {
        return texts.length;
    }

    String text(final int id)
    {
        return texts[id];
    }

    float score(final int id)
    {
        return scores[id];
    }

    int attr(final int id)
    {
        return attrs[id];
    }

    boolean hasAttr(final int id, final int mask)
    {
        return (attrs[id] & mask) != 0;
    }

    void setAttr(final int id, final int mask, final boolean on)
    {
        attrs[id] = on ? attrs[id] | mask : attrs[id] & ~mask;
    }

    /** The id of the token with exactly this text, or -1. */
    int id(final String text)
    {
        final Integer id = ids.get(text);
        return id == null ? -1 : id;
    }

    boolean contains(final int id)
    {
        return id >= 0 && id < texts.length;
    }

    /** Throws a clear {@link IllegalArgumentException} unless {@code id} is a token of this vocabulary. */
    void check(final int id)
    {
        if (!contains(id))
        {
            throw new IllegalArgumentException("token id " + id + " is out of range: the vocabulary has " +
                texts.length + " tokens (valid ids 0.." + (texts.length - 1) + ")");
        }
    }
}
