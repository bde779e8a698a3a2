package dev.strata.compute.synth;

import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.gguf.GgufValueType;

import java.util.ArrayList;
import java.util.List;

/**
 * A small SentencePiece-style vocabulary that synthetic models carry when no tokenizer file is given:
 * {@code <unk>}, {@code <s>}, {@code </s>}, the 256 byte-fallback tokens, the word-boundary marker and the
 * lower-case letters with and without it. Any text encodes (through byte fallback), so the suite can run end
 * to end on data the project generates itself.
 */
final class BuiltinVocabulary
{
    private static final int NORMAL = 1;
    private static final int UNKNOWN = 2;
    private static final int CONTROL = 3;
    private static final int BYTE = 6;

    private BuiltinVocabulary()
    {
    }

    static GgufMetadata metadata()
    {
        final List<String> tokens = new ArrayList<>();
        final List<Integer> types = new ArrayList<>();
        final List<Float> scores = new ArrayList<>();
        add(tokens, types, scores, "<unk>", UNKNOWN, 0f);
        add(tokens, types, scores, "<s>", CONTROL, 0f);
        add(tokens, types, scores, "</s>", CONTROL, 0f);
        for (int b = 0; b < 256; b++)
        {
            add(tokens, types, scores, String.format("<0x%02X>", b), BYTE, 0f);
        }
        add(tokens, types, scores, "\u2581", NORMAL, -1f);
        for (char c = 'a'; c <= 'z'; c++)
        {
            add(tokens, types, scores, "\u2581" + c, NORMAL, -2f - (c - 'a') * 0.01f);
            add(tokens, types, scores, String.valueOf(c), NORMAL, -3f - (c - 'a') * 0.01f);
        }
        final float[] s = new float[scores.size()];
        final int[] t = new int[types.size()];
        for (int i = 0; i < s.length; i++)
        {
            s[i] = scores.get(i);
            t[i] = types.get(i);
        }
        final GgufMetadata md = new GgufMetadata();
        md.putString("tokenizer.ggml.model", "llama");
        md.putArray("tokenizer.ggml.tokens", GgufValueType.STRING, tokens.toArray(new String[0]));
        md.putArray("tokenizer.ggml.scores", GgufValueType.FLOAT32, s);
        md.putArray("tokenizer.ggml.token_type", GgufValueType.INT32, t);
        md.putUInt32("tokenizer.ggml.bos_token_id", 1);
        md.putUInt32("tokenizer.ggml.eos_token_id", 2);
        md.putUInt32("tokenizer.ggml.unknown_token_id", 0);
        return md;
    }

    private static void add(final List<String> tokens, final List<Integer> types, final List<Float> scores,
        final String text, final int type, final float score)
    {
        tokens.add(text);
        types.add(type);
        scores.add(score);
    }
}
