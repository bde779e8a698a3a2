package dev.strata.tools;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

/**
 * What a serve benchmark's spread of time per output token is made of, as the client sees it. Every gap between two
 * of a request's tokens is counted under the number of requests that were decoding at its midpoint (between their
 * first and last token, itself included): with a batching server that is the batch the gap's step ran, less the
 * requests still in prefill. Per count: how many gaps and their median and P90.
 * <p>
 * Then the spread that the mix of batch sizes alone explains: each request's gaps replaced by the run's median gap
 * at their count, averaged per request, and the P99 / P50 of those means beside the measured one. A measured ratio
 * well above the mix's says the same batch sizes ran slower for some requests than for others (the machine, or
 * something the counts do not see); a mix ratio near the measured one says the requests saw different batch sizes.
 * <p>
 * The counts are the client's: a request that the server has already finished but whose last chunk is still on its
 * way counts a little longer than it ran.
 */
final class DecodeMix
{
    /** The gaps of one count of decoding requests, in ms. */
    record Row(int decoding, int gaps, double p50Ms, double p90Ms)
    {
    }

    /** The rows by count, and the P99 / P50 of per-request mean gaps: measured, and from the mix alone. */
    record Summary(List<Row> rows, double measuredRatio, double mixRatio)
    {
    }

    private DecodeMix()
    {
    }

    /**
     * @param arrivals per request, its tokens' arrival times (any one clock, seconds), ascending
     * @return the summary; requests with fewer than two tokens add no gaps (and no mean)
     */
    static Summary of(final List<double[]> arrivals)
    {
        final int n = arrivals.size();
        final double[] first = new double[n];
        final double[] last = new double[n];
        for (int i = 0; i < n; i++)
        {
            final double[] a = arrivals.get(i);
            first[i] = a.length > 0 ? a[0] : Double.NaN;
            last[i] = a.length > 0 ? a[a.length - 1] : Double.NaN;
        }
        final List<int[]> counts = new ArrayList<>(n);
        final TreeMap<Integer, List<Double>> byCount = new TreeMap<>();
        for (int i = 0; i < n; i++)
        {
            final double[] a = arrivals.get(i);
            final int[] c = new int[Math.max(0, a.length - 1)];
            for (int k = 1; k < a.length; k++)
            {
                final double mid = (a[k - 1] + a[k]) / 2;
                int decoding = 0;
                for (int j = 0; j < n; j++)
                {
                    decoding += first[j] <= mid && mid <= last[j] ? 1 : 0;
                }
                c[k - 1] = decoding;
                byCount.computeIfAbsent(decoding, x -> new ArrayList<>()).add(a[k] - a[k - 1]);
            }
            counts.add(c);
        }
        final List<Row> rows = new ArrayList<>();
        final TreeMap<Integer, Double> median = new TreeMap<>();
        for (final var e : byCount.entrySet())
        {
            final double[] g = e.getValue().stream().mapToDouble(Double::doubleValue).toArray();
            median.put(e.getKey(), ServeBench.pct(g, 50));
            rows.add(new Row(e.getKey(), g.length, 1000 * ServeBench.pct(g, 50), 1000 * ServeBench.pct(g, 90)));
        }
        final List<Double> measured = new ArrayList<>();
        final List<Double> mix = new ArrayList<>();
        for (int i = 0; i < n; i++)
        {
            final double[] a = arrivals.get(i);
            final int[] c = counts.get(i);
            if (c.length == 0)
            {
                continue;
            }
            double m = 0;
            for (final int decoding : c)
            {
                m += median.get(decoding);
            }
            measured.add((a[a.length - 1] - a[0]) / c.length);
            mix.add(m / c.length);
        }
        return new Summary(rows, ratio(measured), ratio(mix));
    }

    private static double ratio(final List<Double> v)
    {
        final double[] a = v.stream().mapToDouble(Double::doubleValue).toArray();
        final double p50 = ServeBench.pct(a, 50);
        return a.length == 0 || p50 == 0 ? Double.NaN : ServeBench.pct(a, 99) / p50;
    }

    /** The arrival times of a result's tokens, seconds after {@code start} (the run's {@link System#nanoTime}). */
    static double[] arrivals(final ServeBench.Result r, final long start)
    {
        final double[] a = new double[r.itl().length + 1];
        a[0] = (r.sentNanos() - start) / 1e9 + r.ttft();
        for (int k = 0; k < r.itl().length; k++)
        {
            a[k + 1] = a[k] + r.itl()[k];
        }
        return a;
    }

    /** One line for the text report. */
    static String line(final Summary s)
    {
        final StringBuilder b = new StringBuilder("ITL by requests decoding at once (median, P90 ms; gaps):");
        for (final Row r : s.rows())
        {
            b.append(String.format(java.util.Locale.ROOT, " %d: %.1f, %.1f (%d);", r.decoding(), r.p50Ms(), r.p90Ms(),
                r.gaps()));
        }
        b.append(String.format(java.util.Locale.ROOT, " per-request mean gap P99/P50 %.2f, from the mix alone %.2f",
            s.measuredRatio(), s.mixRatio()));
        return b.toString();
    }
}
