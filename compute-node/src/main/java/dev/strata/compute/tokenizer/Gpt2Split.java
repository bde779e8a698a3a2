package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

/**
 * The GPT-2 pre-tokenizer regex,
 * {@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+}, as a hand-written scanner
 * with the same leftmost-alternative semantics (llama.cpp uses an equivalent scanner for it).
 */
final class Gpt2Split implements SplitRule
{
    static final Gpt2Split INSTANCE = new Gpt2Split();

    private Gpt2Split()
    {
    }

    @Override
    public void split(final int[] cps, final int from, final int to, final IntArrayList lengths)
    {
        int pos = from;
        while (pos < to)
        {
            final int end = matchAt(cps, pos, to);
            lengths.addInt(end - pos);
            pos = end;
        }
    }

    private static int matchAt(final int[] cps, final int pos, final int to)
    {
        final int cp = cps[pos];
        final int contraction = Contractions.match(cps, pos, to, false);
        if (contraction > 0)
        {
            return pos + contraction;
        }

        // " ?X+" where X is letters, numbers or "other": the optional space is decided by the next code point
        final int lead = cp == ' ' ? pos + 1 : pos;
        if (lead < to)
        {
            final int first = cps[lead];
            if (CodepointClass.isLetter(first))
            {
                return runEnd(cps, lead, to, Kind.LETTER);
            }
            if (CodepointClass.isNumber(first))
            {
                return runEnd(cps, lead, to, Kind.NUMBER);
            }
            if (CodepointClass.isOther(first))
            {
                return runEnd(cps, lead, to, Kind.OTHER);
            }
        }
        return Whitespace.runMatch(cps, pos, to);
    }

    private static int runEnd(final int[] cps, final int start, final int to, final Kind kind)
    {
        int p = start;
        while (p < to && kind.test(cps[p]))
        {
            p++;
        }
        return p;
    }

    private enum Kind
    {
        LETTER, NUMBER, OTHER;

        boolean test(final int cp)
        {
            return switch (this)
            {
                case LETTER -> CodepointClass.isLetter(cp);
                case NUMBER -> CodepointClass.isNumber(cp);
                case OTHER -> CodepointClass.isOther(cp);
            };
        }
    }
}
