package dev.strata.compute.engine;

import java.util.List;

/** Finding stop strings in generated text, and how much text to hold back while one may be starting. */
final class StopStrings
{
    private StopStrings()
    {
    }

    /**
     * Index of the first stop string in {@code text} that ends after {@code from} (text before it was already
     * checked), or -1.
     */
    static int find(final CharSequence text, final List<String> stops, final int from)
    {
        int best = -1;
        final String s = text.toString();
        for (final String stop : stops)
        {
            final int i = s.indexOf(stop, Math.max(0, from - stop.length() + 1));
            if (i >= 0 && (best < 0 || i < best))
            {
                best = i;
            }
        }
        return best;
    }

    /** Length of the longest end of {@code text} that is the start of a stop string (not to be emitted yet). */
    static int heldBack(final CharSequence text, final List<String> stops)
    {
        int held = 0;
        final int n = text.length();
        final String s = stops.isEmpty() ? "" : text.toString();
        for (final String stop : stops)
        {
            for (int k = Math.min(stop.length() - 1, n); k > held; k--)
            {
                if (stop.regionMatches(0, s, n - k, k))
                {
                    held = k;
                    break;
                }
            }
        }
        return held;
    }
}
