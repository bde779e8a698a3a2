package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

import java.util.function.IntPredicate;

/**
 * A character-class regex: {@code [class]+} (maximal runs), {@code [class]} (single code points) or
 * {@code [class]{k}} exactly (for {@code [0-9][0-9][0-9]}). Matches and the gaps between them become pieces.
 */
final class CharClassSplit implements SplitRule
{
    /** {@code [\p{P}\$\+<=>\^~\|]+}, the first regex of llama.cpp's default BPE pre-tokenizer. */
    static final CharClassSplit PUNCTUATION_RUNS =
        runs(cp -> CodepointClass.isPunctuation(cp) || "$+<=>^~|".indexOf(cp) >= 0);
    /** {@code [\p{P}\$\+<=>\^~\|`]+}, Falcon's variant. */
    static final CharClassSplit PUNCTUATION_RUNS_WITH_BACKTICK =
        runs(cp -> CodepointClass.isPunctuation(cp) || "$+<=>^~|`".indexOf(cp) >= 0);
    /** {@code \p{N}+}. */
    static final CharClassSplit NUMBER_RUNS = runs(CodepointClass::isNumber);
    /** {@code \p{N}}. */
    static final CharClassSplit SINGLE_NUMBERS = new CharClassSplit(CodepointClass::isNumber, 1, false);
    /** {@code [0-9][0-9][0-9]}. */
    static final CharClassSplit ASCII_DIGIT_TRIPLES = new CharClassSplit(cp -> cp >= '0' && cp <= '9', 3, false);

    private final IntPredicate member;
    private final int width;
    private final boolean greedy;

    private CharClassSplit(final IntPredicate member, final int width, final boolean greedy)
    {
        this.member = member;
        this.width = width;
        this.greedy = greedy;
    }

    private static CharClassSplit runs(final IntPredicate member)
    {
        return new CharClassSplit(member, 1, true);
    }

    @Override
    public void split(final int[] cps, final int from, final int to, final IntArrayList lengths)
    {
        int gapStart = from;
        int pos = from;
        while (pos < to)
        {
            final int end = matchAt(cps, pos, to);
            if (end < 0)
            {
                pos++;
                continue;
            }
            if (pos > gapStart)
            {
                lengths.addInt(pos - gapStart);
            }
            lengths.addInt(end - pos);
            pos = end;
            gapStart = end;
        }
        if (to > gapStart)
        {
            lengths.addInt(to - gapStart);
        }
    }

    private int matchAt(final int[] cps, final int pos, final int to)
    {
        if (pos + width > to)
        {
            return -1;
        }
        for (int p = pos; p < pos + width; p++)
        {
            if (!member.test(cps[p]))
            {
                return -1;
            }
        }
        int end = pos + width;
        if (greedy)
        {
            while (end < to && member.test(cps[end]))
            {
                end++;
            }
        }
        return end;
    }
}
