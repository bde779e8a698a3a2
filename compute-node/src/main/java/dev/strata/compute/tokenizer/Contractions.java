package dev.strata.compute.tokenizer;

/** The English contraction alternatives {@code 's|'t|'re|'ve|'m|'ll|'d} that lead the GPT-2 family regexes. */
final class Contractions
{
    private Contractions()
    {
    }

    /**
     * Length of the contraction starting at {@code pos}, or 0 if there is none.
     *
     * @param ignoreCase true for the llama3-style {@code '[sS]|'[tT]|...} form (ASCII case only).
     */
    static int match(final int[] cps, final int pos, final int to, final boolean ignoreCase)
    {
        if (cps[pos] != '\'' || pos + 1 >= to)
        {
            return 0;
        }
        final int c1 = ignoreCase ? CodepointClass.toLowerAscii(cps[pos + 1]) : cps[pos + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        {
            return 2;
        }
        if (pos + 2 >= to)
        {
            return 0;
        }
        final int c2 = ignoreCase ? CodepointClass.toLowerAscii(cps[pos + 2]) : cps[pos + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        {
            return 3;
        }
        return 0;
    }
}
