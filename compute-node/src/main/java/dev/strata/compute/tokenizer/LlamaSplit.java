package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

/**
 * The Llama 3 / Qwen 2 pre-tokenizer regex, as a hand-written scanner with the same leftmost-alternative
 * semantics:
 * <pre>
 * (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * </pre>
 * with {@code D = 3} for Llama 3 ({@code \p{N}{1,3}}) and {@code D = 1} for Qwen 2 ({@code \p{N}}).
 */
final class LlamaSplit implements SplitRule
{
    static final LlamaSplit LLAMA3 = new LlamaSplit(3);
    static final LlamaSplit QWEN2 = new LlamaSplit(1);

    private final int maxDigits;

    private LlamaSplit(final int maxDigits)
    {
        this.maxDigits = maxDigits;
    }

    @Override
    public void split(final int[] cps, final int from, final int to, final IntArrayList lengths)
    {
        int pos = from;
        while (pos < to)
        {
            final int cp = cps[pos];
            final int contraction = Contractions.match(cps, pos, to, true);
            if (contraction > 0)
            {
                lengths.addInt(contraction);
                pos += contraction;
                continue;
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (cp != '\r' && cp != '\n' && !CodepointClass.isNumber(cp) &&
                (CodepointClass.isLetter(cp) || (pos + 1 < to && CodepointClass.isLetter(cps[pos + 1]))))
            {
                int p = pos + 1;
                while (p < to && CodepointClass.isLetter(cps[p]))
                {
                    p++;
                }
                lengths.addInt(p - pos);
                pos = p;
                continue;
            }

            // \p{N}{1,D}: a run of numbers is cut into pieces of D
            if (CodepointClass.isNumber(cp))
            {
                int p = pos;
                while (p < to && CodepointClass.isNumber(cps[p]) && p - pos < maxDigits)
                {
                    p++;
                }
                lengths.addInt(p - pos);
                pos = p;
                continue;
            }

            // " ?[^\s\p{L}\p{N}]+[\r\n]*"
            final int lead = cp == ' ' ? pos + 1 : pos;
            if (lead < to && CodepointClass.isOther(cps[lead]))
            {
                int p = lead;
                while (p < to && CodepointClass.isOther(cps[p]))
                {
                    p++;
                }
                while (p < to && (cps[p] == '\r' || cps[p] == '\n'))
                {
                    p++;
                }
                lengths.addInt(p - pos);
                pos = p;
                continue;
            }

            // \s*[\r\n]+ : the whitespace run up to and including its last line break
            final int spaces = Whitespace.count(cps, pos, to);
            int lastBreakEnd = -1;
            for (int p = pos; p < pos + spaces; p++)
            {
                if (cps[p] == '\r' || cps[p] == '\n')
                {
                    lastBreakEnd = p + 1;
                }
            }
            final int end = lastBreakEnd > 0 ? lastBreakEnd : Whitespace.runMatch(cps, pos, to);
            lengths.addInt(end - pos);
            pos = end;
        }
    }
}
