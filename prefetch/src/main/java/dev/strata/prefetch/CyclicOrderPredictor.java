package dev.strata.prefetch;

/**
 * A dense model's access order: units {@code 0..n-1} in a cycle (layer 0, 1, ..., n-1, then the next token's
 * layer 0). Exact for dense transformers, so prefetch is always right and eviction by {@link #distance} is
 * optimal.
 */
public final class CyclicOrderPredictor implements Predictor
{
    private final int units;

    public CyclicOrderPredictor(final int units)
    {
        if (units < 1)
        {
            throw new IllegalArgumentException("units must be >= 1, not " + units);
        }
        this.units = units;
    }

    @Override
    public void observe(final int unit)
    {
        // the order is known
    }

    @Override
    public int[] predict(final int current, final int max)
    {
        final int n = Math.min(max, units - 1);
        final int[] next = new int[Math.max(0, n)];
        for (int i = 0; i < next.length; i++)
        {
            next[i] = (current + 1 + i) % units;
        }
        return next;
    }

    @Override
    public int distance(final int current, final int unit)
    {
        final int d = Math.floorMod(unit - current, units);
        return d == 0 ? units : d;
    }
}
