package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

/**
 * One pre-tokenizer regex: splits a segment of code points into pieces that cover it completely, in order.
 * <p>
 * As in llama.cpp's {@code unicode_regex_split}, text a regex does not match is kept as a piece of its own
 * (between the matches), and a rule only ever sees one segment, so lookarounds stop at the segment's ends.
 */
interface SplitRule
{
    /**
     * Appends the lengths (in code points) of the pieces of {@code codePoints[from..to)}.
     *
     * @param codePoints the whole text.
     * @param from       first code point of the segment.
     * @param to         end (exclusive) of the segment.
     * @param lengths    receives one positive length per piece; they sum to {@code to - from}.
     */
    void split(int[] codePoints, int from, int to, IntArrayList lengths);
}
