package dev.strata.compute.tokenizer;

import java.util.HashMap;
import java.util.Map;

/**
 * The ranks of the BPE merges listed in {@code tokenizer.ggml.merges} (lower rank merges first). Each entry is
 * {@code "left right"}, split at the first space after the first character; when a pair is listed twice the
 * first rank counts, as in llama.cpp.
 */
final class MergeRanks
{
    private record Pair(String left, String right)
    {
    }

    private final Map<Pair, Integer> ranks;

    private MergeRanks(final Map<Pair, Integer> ranks)
    {
        this.ranks = ranks;
    }

    static MergeRanks of(final String[] merges)
    {
        final Map<Pair, Integer> ranks = new HashMap<>(merges.length * 2);
        for (int rank = 0; rank < merges.length; rank++)
        {
            final String merge = merges[rank];
            final int space = merge.indexOf(' ', 1);
            final Pair pair = space < 0 ?
                new Pair("", "") : new Pair(merge.substring(0, space), merge.substring(space + 1));
            ranks.putIfAbsent(pair, rank);
        }
        return new MergeRanks(ranks);
    }

    /** The rank of merging {@code left} with {@code right}, or -1 if they do not merge. */
    int rank(final String left, final String right)
    {
        final Integer rank = ranks.get(new Pair(left, right));
        return rank == null ? -1 : rank;
    }

}
