package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;

/**
 * Cuts special-token texts out of the input before the model tokenizer sees it (llama.cpp's
 * {@code tokenizer_st_partition}).
 * <p>
 * Candidates are the CONTROL, USER_DEFINED and UNKNOWN tokens, longest text (in UTF-8 bytes) first; ties go
 * to the lower id (llama.cpp's sort leaves their order unspecified). Each candidate in turn splits every text
 * fragment left at each of its occurrences. Without {@code parseSpecial} only USER_DEFINED tokens are cut out,
 * as in llama.cpp (and Hugging Face tokenizers). Tokens with the LSTRIP/RSTRIP attribute also swallow the ASCII
 * whitespace on that side.
 */
final class SpecialTokenSplitter
{
    /**
     * One piece of the input: either a special token, or {@code text[start..end)} still to be tokenized.
     *
     * @param token the special token id, or -1 for text.
     * @param start first char of the text piece.
     * @param end   end (exclusive) of the text piece.
     */
    record Fragment(int token, int start, int end)
    {
        boolean isText()
        {
            return token < 0;
        }
    }

    private final Vocabulary vocab;
    private final int[] candidates;

    private SpecialTokenSplitter(final Vocabulary vocab, final int[] candidates)
    {
        this.vocab = vocab;
        this.candidates = candidates;
    }

    /**
     * Builds the splitter and applies llama.cpp's per-model strip attributes: {@code <mask>} gets LSTRIP for the
     * jina-v2 pre-tokenizers; for Phi-3 models (by {@code general.name}) every special token and {@code </s>} get
     * RSTRIP, except {@code <unk>}, {@code <s>} and {@code <|endoftext|>}.
     */
    static SpecialTokenSplitter create(final Vocabulary vocab, final GgufMetadata md)
    {
        final List<Integer> ids = new ArrayList<>();
        for (int id = 0; id < vocab.size(); id++)
        {
            if (vocab.hasAttr(id, TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN))
            {
                ids.add(id);
            }
        }
        ids.sort(Comparator.comparingInt((Integer id) -> -utf8Length(vocab.text(id))).thenComparingInt(id -> id));
        final int[] candidates = ids.stream().mapToInt(Integer::intValue).toArray();

        final String pre = md.getString("tokenizer.ggml.pre", "");
        final String modelName = md.getString("general.name", "").toLowerCase(Locale.ROOT);
        if (pre.contains("jina-v2-de") || pre.contains("jina-v2-es") || pre.contains("jina-v2-code"))
        {
            setAttr(vocab, "<mask>", TokenAttr.LSTRIP, true);
        }
        else if (modelName.contains("phi-3") || modelName.contains("phi3"))
        {
            for (final int id : candidates)
            {
                vocab.setAttr(id, TokenAttr.RSTRIP, true);
            }
            setAttr(vocab, "</s>", TokenAttr.RSTRIP, true);
            for (final String text : new String[]{"<unk>", "<s>", "<|endoftext|>"})
            {
                setAttr(vocab, text, TokenAttr.RSTRIP, false);
            }
        }
        return new SpecialTokenSplitter(vocab, candidates);
    }

    private static void setAttr(final Vocabulary vocab, final String text, final int attr, final boolean on)
    {
        final int id = vocab.id(text);
        if (id >= 0)
        {
            vocab.setAttr(id, attr, on);
        }
    }

    private static int utf8Length(final String s)
    {
        return s.getBytes(StandardCharsets.UTF_8).length;
    }

    /** Splits non-empty {@code text} into special tokens and text fragments, in order. */
    List<Fragment> split(final String text, final boolean parseSpecial)
    {
        List<Fragment> fragments = new ArrayList<>();
        fragments.add(new Fragment(-1, 0, text.length()));
        for (final int id : candidates)
        {
            final int attr = vocab.attr(id);
            if (!parseSpecial && (attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) != 0)
            {
                continue;
            }
            final String special = vocab.text(id);
            if (!text.contains(special))
            {
                continue;
            }
            final List<Fragment> next = new ArrayList<>(fragments.size() + 4);
            for (final Fragment fragment : fragments)
            {
                if (fragment.isText())
                {
                    cut(text, fragment, id, special, attr, next);
                }
                else
                {
                    next.add(fragment);
                }
            }
            fragments = next;
        }
        return fragments;
    }

    private static void cut(final String text, final Fragment fragment, final int id, final String special,
        final int attr, final List<Fragment> out)
    {
        int start = fragment.start();
        final int end = fragment.end();
        while (true)
        {
            final int match = text.indexOf(special, start);
            if (match < 0 || match + special.length() > end)
            {
                if (end > start)
                {
                    out.add(new Fragment(-1, start, end));
                }
                return;
            }
            int leftEnd = match;
            if ((attr & TokenAttr.LSTRIP) != 0)
            {
                while (leftEnd > start && isSpace(text.charAt(leftEnd - 1)))
                {
                    leftEnd--;
                }
            }
            if (leftEnd > start)
            {
                out.add(new Fragment(-1, start, leftEnd));
            }
            out.add(new Fragment(id, match, match + special.length()));
            start = match + special.length();
            if ((attr & TokenAttr.RSTRIP) != 0)
            {
                while (start < end && isSpace(text.charAt(start)))
                {
                    start++;
                }
            }
        }
    }

    /** C's {@code isspace} in the "C" locale. */
    private static boolean isSpace(final char c)
    {
        return c == ' ' || (c >= '\t' && c <= '\r');
    }
}
