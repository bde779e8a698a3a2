package dev.strata.compute.tokenizer;

/**
 * The working state of a BPE merge loop: a doubly linked list of adjacent symbols, each a slice
 * {@code [start, start + length)} of one string. Merging a symbol with its successor extends it and empties
 * the successor (length 0), which is how stale queued pairs are recognised.
 */
final class Symbols
{
    private final int[] start;
    private final int[] length;
    private final int[] prev;
    private final int[] next;
    private final int count;

    private Symbols(final int capacity)
    {
        start = new int[capacity];
        length = new int[capacity];
        prev = new int[capacity];
        next = new int[capacity];
        count = capacity;
    }

    /** One symbol per code point of {@code text}. */
    static Symbols ofCodePoints(final String text)
    {
        final Symbols symbols = new Symbols(text.codePointCount(0, text.length()));
        int offset = 0;
        for (int i = 0; i < symbols.count; i++)
        {
            final int size = Character.charCount(text.codePointAt(offset));
            symbols.start[i] = offset;
            symbols.length[i] = size;
            symbols.prev[i] = i - 1;
            symbols.next[i] = i + 1 < symbols.count ? i + 1 : -1;
            offset += size;
        }
        return symbols;
    }

    int count()
    {
        return count;
    }

    int start(final int i)
    {
        return start[i];
    }

    int length(final int i)
    {
        return length[i];
    }

    int prev(final int i)
    {
        return prev[i];
    }

    int next(final int i)
    {
        return next[i];
    }

    /** Appends symbol {@code i}'s successor to it and unlinks the successor. */
    void mergeWithNext(final int i)
    {
        final int right = next[i];
        length[i] += length[right];
        length[right] = 0;
        next[i] = next[right];
        if (next[right] >= 0)
        {
            prev[next[right]] = i;
        }
    }
}
