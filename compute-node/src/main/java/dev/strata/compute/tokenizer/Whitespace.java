package dev.strata.compute.tokenizer;

/** The trailing whitespace alternatives shared by the GPT-2 family regexes: {@code \s+(?!\S)|\s+}. */
final class Whitespace
{
    private Whitespace()
    {
    }

    /**
     * End of the match at {@code pos} of {@code \s+(?!\S)|\s+}; when {@code pos} is not whitespace at all, the code
     * point is unmatched and forms a piece of one.
     */
    static int runMatch(final int[] cps, final int pos, final int to)
    {
        final int n = count(cps, pos, to);
        if (n > 1 && pos + n < to)
        {
            // a run followed by a non-space leaves its last space to the next piece
            return pos + n - 1;
        }
        return pos + Math.max(n, 1);
    }

    /** Number of consecutive whitespace code points from {@code pos}. */
    static int count(final int[] cps, final int pos, final int to)
    {
        int p = pos;
        while (p < to && CodepointClass.isWhitespace(cps[p]))
        {
            p++;
        }
        return p - pos;
    }
}
