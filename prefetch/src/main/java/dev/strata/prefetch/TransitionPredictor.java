package dev.strata.prefetch;

import java.util.Arrays;

/**
 * A predictor learned from access traces: first-order transition counts between units (which unit followed
 * which, how often), for data-dependent access such as mixture-of-experts routing or embedding rows. It predicts
 * the most frequent successors of the current unit, following the most likely chain for further steps, and
 * estimates a unit's distance as the step at which that chain (widened to the top successors) first reaches it.
 * Counts decay (halve when a row's total passes a bound), so the predictor follows drifting access patterns.
 */
public final class TransitionPredictor implements Predictor
{
    private static final int DECAY_AT = 1 << 16;

    private final int units;
    private final int[][] counts;
    private final int[] totals;
    private int previous = -1;

    public TransitionPredictor(final int units)
    {
        if (units < 1)
        {
            throw new IllegalArgumentException("units must be >= 1, not " + units);
        }
        this.units = units;
        this.counts = new int[units][units];
        this.totals = new int[units];
    }

    /**
     * Learns from a recorded trace (for example the accesses of earlier requests). The trace's last unit is not taken
     * as the predecessor of the next unit observed: a trace ends where a request ended.
     */
    public void train(final int[] trace)
    {
        previous = -1;
        for (final int unit : trace)
        {
            observe(unit);
        }
        previous = -1;
    }

    /** Learns from a recorded trace over as many units as this predictor has. */
    public void train(final AccessTrace trace)
    {
        if (trace.units() != units)
        {
            throw new IllegalArgumentException("the trace is over " + trace.units() + " units, this predictor over " +
                units + " (a trace of another model?)");
        }
        train(trace.trace());
    }

    @Override
    public void observe(final int unit)
    {
        if (unit < 0 || unit >= units)
        {
            throw new IllegalArgumentException("unit " + unit + " out of 0.." + (units - 1));
        }
        if (previous >= 0)
        {
            counts[previous][unit]++;
            if (++totals[previous] > DECAY_AT)
            {
                int total = 0;
                for (int u = 0; u < units; u++)
                {
                    counts[previous][u] >>= 1;
                    total += counts[previous][u];
                }
                totals[previous] = total;
            }
        }
        previous = unit;
    }

    /** The learned probability that {@code next} follows {@code from}. */
    public double probability(final int from, final int next)
    {
        return totals[from] == 0 ? 0 : (double)counts[from][next] / totals[from];
    }

    @Override
    public int[] predict(final int current, final int max)
    {
        final int[] out = new int[Math.min(max, units)];
        int n = 0;
        final boolean[] taken = new boolean[units];
        taken[current] = true;
        int at = current;
        // follow the most likely chain; at each step add that unit's other frequent successors behind it
        while (n < out.length)
        {
            final int[] ranked = ranked(at);
            int best = -1;
            for (final int u : ranked)
            {
                if (counts[at][u] == 0)
                {
                    break;
                }
                if (!taken[u])
                {
                    if (best < 0)
                    {
                        best = u;
                    }
                    taken[u] = true;
                    out[n++] = u;
                    if (n == out.length)
                    {
                        break;
                    }
                }
            }
            if (best < 0)
            {
                break;
            }
            at = best;
        }
        return Arrays.copyOf(out, n);
    }

    @Override
    public int distance(final int current, final int unit)
    {
        final int[] chain = predict(current, units);
        for (int i = 0; i < chain.length; i++)
        {
            if (chain[i] == unit)
            {
                return i + 1;
            }
        }
        return unit == current ? units : 2 * units; // never seen after this one: farthest
    }

    private int[] ranked(final int from)
    {
        final Integer[] order = new Integer[units];
        for (int u = 0; u < units; u++)
        {
            order[u] = u;
        }
        Arrays.sort(order, (a, b) -> Integer.compare(counts[from][b], counts[from][a]));
        final int[] out = new int[units];
        for (int i = 0; i < units; i++)
        {
            out[i] = order[i];
        }
        return out;
    }
}
