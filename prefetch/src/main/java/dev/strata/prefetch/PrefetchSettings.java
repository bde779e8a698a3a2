package dev.strata.prefetch;

import java.util.Locale;

/**
 * The prefetch knobs an operator turns on a running node (pushed by the parameter service, applied without a
 * restart), and that a what-if replay runs a recorded trace under.
 *
 * @param lookahead       fixed look-ahead depth in layers, {@code 1..}{@link #MAX_LOOKAHEAD}; 0 = adaptive (grown
 *                        when a prefetch is late, shrunk when one is wasted, up to the node's maximum).
 * @param predictor       which predictor decides what is fetched ahead.
 * @param nodeBudgetBytes the node's memory budget for weights; 0 = keep the node's own.
 */
public record PrefetchSettings(int lookahead, Kind predictor, long nodeBudgetBytes)
{
    /** The largest fixed look-ahead accepted. */
    public static final int MAX_LOOKAHEAD = 64;

    /** What is fetched ahead. */
    public enum Kind
    {
        /** Layers by the cyclic layer order, and experts of the next layer from learned routing transitions. */
        LEARNED,
        /** Layers by the cyclic layer order only: no expert guesses. */
        LAYER_ORDER,
        /** Nothing: every unit is fetched when the forward pass asks for it. */
        NONE;

        /** The name on the wire and in the admin API: {@code learned}, {@code layer-order}, {@code none}. */
        public String label()
        {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }

        /** @throws IllegalArgumentException naming the accepted values. */
        public static Kind parse(final String text)
        {
            for (final Kind k : values())
            {
                if (k.label().equals(text))
                {
                    return k;
                }
            }
            throw new IllegalArgumentException("invalid predictor=" + text + " (learned, layer-order or none)");
        }
    }

    /** The defaults: adaptive look-ahead, learned predictor, the node's own budget. */
    public static final PrefetchSettings DEFAULTS = new PrefetchSettings(0, Kind.LEARNED, 0);

    public PrefetchSettings
    {
        if (lookahead < 0 || lookahead > MAX_LOOKAHEAD)
        {
            throw new IllegalArgumentException("invalid lookahead=" + lookahead + " (0 = adaptive, or 1.." +
                MAX_LOOKAHEAD + " layers)");
        }
        if (predictor == null)
        {
            throw new IllegalArgumentException("invalid predictor=null (learned, layer-order or none)");
        }
        if (nodeBudgetBytes < 0)
        {
            throw new IllegalArgumentException("invalid nodeBudgetBytes=" + nodeBudgetBytes + " (0 = the node's own)");
        }
    }

    public PrefetchSettings withLookahead(final int depth)
    {
        return new PrefetchSettings(depth, predictor, nodeBudgetBytes);
    }

    public PrefetchSettings withPredictor(final Kind kind)
    {
        return new PrefetchSettings(lookahead, kind, nodeBudgetBytes);
    }

    public PrefetchSettings withNodeBudgetBytes(final long bytes)
    {
        return new PrefetchSettings(lookahead, predictor, bytes);
    }
}
