package dev.strata.paramserver;

import com.fasterxml.jackson.core.JsonGenerator;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The dashboard's short history: one sample a second for {@link #SECONDS} seconds (15 minutes), for the service
 * itself, for every (node, model version) that reports, and per model version a heat map of unit accesses.
 * <p>
 * Memory: a series is {@code fields x 900} doubles plus its times (16 nodes of 20 fields: 2.3 MB); a heat map is
 * {@code 900 x units} longs per version. Written by the collector's thread, read by the HTTP threads; each series
 * is guarded by its own monitor, so a reader copies one series at a time and never holds the writer long.
 */
final class DashboardHistory
{
    /** Seconds kept. */
    static final int SECONDS = 900;

    /** What the service samples every second. */
    static final String[] SERVICE_FIELDS = {
        "memory_hits", "memory_misses", "ssd_hits", "ssd_misses", "object_hits", "object_misses",
        "memory_used_bytes", "ssd_used_bytes", "object_used_bytes", "memory_hit_rate", "ssd_hit_rate",
        "object_hit_rate", "blocks_served_per_s", "served_bytes_per_s", "link_bytes_per_second"};

    /** What a node's report becomes, per second. */
    static final String[] NODE_FIELDS = {
        "accesses_per_s", "demand_fetches_per_s", "hit_rate", "accuracy", "coverage", "timeliness",
        "stall_ms_per_token", "tokens_per_s", "fetched_bytes_per_s", "wasted_bytes_per_s", "cancelled_per_s",
        "lookahead", "budget_bytes", "used_bytes", "budget_use", "fragmentation_pct", "fetch_p50_ms", "fetch_p99_ms",
        "fetches", "report_cpu_pct"};

    /** Increases with every sample filed: a reader asks for what changed after the revision it saw last. */
    private static final java.util.concurrent.atomic.AtomicLong REVISIONS = new java.util.concurrent.atomic.AtomicLong();

    /** The revision of the newest sample filed so far. */
    static long revision()
    {
        return REVISIONS.get();
    }

    /** A ring of samples: times (epoch seconds) and one row per field. */
    static final class Series
    {
        final String[] fields;
        final long[] times = new long[SECONDS];
        /** When each sample was filed ({@link #revision()}). */
        final long[] revisions = new long[SECONDS];
        final double[][] values;
        int next;
        int size;

        Series(final String[] fields)
        {
            this.fields = fields;
            this.values = new double[fields.length][SECONDS];
        }

        /** Adds a sample; a second already sampled is overwritten, one older than the newest is dropped. */
        synchronized void add(final long second, final double[] row)
        {
            int slot = -1;
            if (size > 0 && times[(next - 1 + SECONDS) % SECONDS] > second)
            {
                return; // older than what is kept: samples stay in order
            }
            if (size > 0 && times[(next - 1 + SECONDS) % SECONDS] == second)
            {
                slot = (next - 1 + SECONDS) % SECONDS;
            }
            if (slot < 0)
            {
                slot = next;
                next = (next + 1) % SECONDS;
                size = Math.min(SECONDS, size + 1);
            }
            times[slot] = second;
            revisions[slot] = REVISIONS.incrementAndGet();
            for (int f = 0; f < fields.length; f++)
            {
                values[f][slot] = row[f];
            }
        }

        /** The newest sample's time, or 0. */
        synchronized long last()
        {
            return size == 0 ? 0 : times[(next - 1 + SECONDS) % SECONDS];
        }

        /**
         * Writes {@code {"t": [...], "fields": {name: [...]}}} for the samples filed after revision {@code since}
         * (oldest first; a sample filed late, for an earlier second, comes in its place by time).
         */
        void write(final JsonGenerator json, final long since) throws IOException
        {
            final long[] t;
            final double[][] v;
            synchronized (this)
            {
                int n = 0;
                for (int i = 0; i < size; i++)
                {
                    n += revisions[(next - size + i + SECONDS) % SECONDS] > since ? 1 : 0;
                }
                t = new long[n];
                v = new double[fields.length][n];
                int k = 0;
                for (int i = 0; i < size; i++)
                {
                    final int slot = (next - size + i + SECONDS) % SECONDS;
                    if (revisions[slot] <= since)
                    {
                        continue;
                    }
                    t[k] = times[slot];
                    for (int f = 0; f < fields.length; f++)
                    {
                        v[f][k] = values[f][slot];
                    }
                    k++;
                }
            }
            json.writeArrayFieldStart("t");
            for (final long s : t)
            {
                json.writeNumber(s);
            }
            json.writeEndArray();
            json.writeObjectFieldStart("fields");
            for (int f = 0; f < fields.length; f++)
            {
                json.writeArrayFieldStart(fields[f]);
                for (final double d : v[f])
                {
                    number(json, d);
                }
                json.writeEndArray();
            }
            json.writeEndObject();
        }
    }

    /** Accesses per unit per second for one model version, summed over its nodes. */
    static final class Heat
    {
        final int layers;
        final int experts;
        final long[] seconds = new long[SECONDS];
        final long[] revisions = new long[SECONDS];
        final long[][] counts;

        Heat(final int layers, final int experts)
        {
            this.layers = layers;
            this.experts = experts;
            this.counts = new long[SECONDS][layers + layers * experts];
        }

        int units()
        {
            return counts[0].length;
        }

        synchronized void add(final long second, final int unit, final long count)
        {
            final int slot = (int)(second % SECONDS);
            if (seconds[slot] != second)
            {
                seconds[slot] = second;
                java.util.Arrays.fill(counts[slot], 0);
            }
            if (unit >= 0 && unit < counts[slot].length)
            {
                counts[slot][unit] += count;
            }
            revisions[slot] = REVISIONS.incrementAndGet();
        }

        void write(final JsonGenerator json, final long since, final long now) throws IOException
        {
            json.writeNumberField("layers", layers);
            json.writeNumberField("experts", experts);
            final List<Long> t = new ArrayList<>();
            final List<long[]> rows = new ArrayList<>();
            synchronized (this)
            {
                for (long s = now - SECONDS + 1; s <= now; s++)
                {
                    final int slot = (int)(s % SECONDS);
                    if (seconds[slot] == s && revisions[slot] > since)
                    {
                        t.add(s);
                        rows.add(counts[slot].clone());
                    }
                }
            }
            json.writeArrayFieldStart("t");
            for (final long s : t)
            {
                json.writeNumber(s);
            }
            json.writeEndArray();
            json.writeArrayFieldStart("counts");
            for (final long[] row : rows)
            {
                json.writeArray(row, 0, row.length);
            }
            json.writeEndArray();
        }
    }

    /** One reporting node of one version: its series and what its last report held. */
    static final class NodeEntry
    {
        final String node;
        final String version;
        final Series series = new Series(NODE_FIELDS);
        /** The last report's figures (for the deltas and for {@code /metrics}). */
        volatile NodeReport last;
        volatile double[] lastRow = new double[NODE_FIELDS.length];
        /** Accesses per unit, cumulative (for {@code /metrics}). */
        volatile long[] unitTotals = new long[0];

        NodeEntry(final String node, final String version)
        {
            this.node = node;
            this.version = version;
        }
    }

    /**
     * One report, as decoded.
     *
     * @param units   unit numbers with accesses since the node's previous report.
     * @param counts  those accesses.
     */
    record NodeReport(String node, String version, long timestampMillis, long settingsGeneration, long accesses,
        long demandFetches, long prefetchIssued, long cancelled, long wastedBytes, long fetchedBytes, long stallNanos,
        long tokens, double accuracy, double coverage, double timeliness, int lookahead, long budgetBytes,
        long usedBytes, long unusableBytes, long fetchCount, long fetchP50Nanos, long fetchP99Nanos,
        long reportCpuNanos, int layers, int experts, long sampledTokens, int[] units, long[] counts)
    {
    }

    final Series service = new Series(SERVICE_FIELDS);
    private final Map<String, NodeEntry> nodes = new LinkedHashMap<>();
    private final Map<String, Heat> heat = new LinkedHashMap<>();

    /** Records a node's report at {@code second} (the service's clock); returns its entry. */
    NodeEntry onReport(final long second, final NodeReport r)
    {
        final NodeEntry e;
        final Heat h;
        synchronized (this)
        {
            e = nodes.computeIfAbsent(r.node() + "|" + r.version(), k -> new NodeEntry(r.node(), r.version()));
            final Heat existing = heat.get(r.version());
            h = existing != null && existing.layers == r.layers() && existing.experts == r.experts() ? existing :
                new Heat(Math.max(1, r.layers()), r.experts());
            heat.put(r.version(), h);
        }
        final NodeReport p = e.last;
        final double dt = p == null ? 1 : Math.max(1e-3, (r.timestampMillis() - p.timestampMillis()) / 1e3);
        final double[] row = new double[NODE_FIELDS.length];
        final long accesses = p == null ? r.accesses() : r.accesses() - p.accesses();
        final long demand = p == null ? r.demandFetches() : r.demandFetches() - p.demandFetches();
        final long tokens = p == null ? r.tokens() : r.tokens() - p.tokens();
        // decode tokens: what the engine sampled where it counts them (a batched step decodes one per sequence),
        // else the forward passes
        final long decoded = r.sampledTokens() > 0 ?
            (p == null ? r.sampledTokens() : r.sampledTokens() - p.sampledTokens()) : tokens;
        final long stall = p == null ? r.stallNanos() : r.stallNanos() - p.stallNanos();
        row[0] = accesses / dt;
        row[1] = demand / dt;
        row[2] = accesses == 0 ? Double.NaN : 1.0 - (double)demand / accesses;
        row[3] = r.accuracy();
        row[4] = r.coverage();
        row[5] = r.timeliness();
        row[6] = tokens == 0 ? Double.NaN : stall / 1e6 / tokens;
        row[7] = decoded / dt;
        row[8] = (p == null ? r.fetchedBytes() : r.fetchedBytes() - p.fetchedBytes()) / dt;
        row[9] = (p == null ? r.wastedBytes() : r.wastedBytes() - p.wastedBytes()) / dt;
        row[10] = (p == null ? r.cancelled() : r.cancelled() - p.cancelled()) / dt;
        row[11] = r.lookahead();
        row[12] = r.budgetBytes();
        row[13] = r.usedBytes();
        row[14] = r.budgetBytes() == 0 ? Double.NaN : (double)r.usedBytes() / r.budgetBytes();
        row[15] = r.usedBytes() == 0 ? 0 : 100.0 * r.unusableBytes() / r.usedBytes();
        row[16] = r.fetchP50Nanos() < 0 ? Double.NaN : r.fetchP50Nanos() / 1e6;
        row[17] = r.fetchP99Nanos() < 0 ? Double.NaN : r.fetchP99Nanos() / 1e6;
        row[18] = r.fetchCount();
        row[19] = p == null ? Double.NaN :
            100.0 * (r.reportCpuNanos() - p.reportCpuNanos()) / 1e9 / dt;
        e.series.add(second, row);
        e.lastRow = row;
        long[] totals = e.unitTotals;
        if (totals.length < h.units())
        {
            totals = java.util.Arrays.copyOf(totals, h.units());
        }
        for (int i = 0; i < r.units().length; i++)
        {
            h.add(second, r.units()[i], r.counts()[i]);
            if (r.units()[i] >= 0 && r.units()[i] < totals.length)
            {
                totals[r.units()[i]] += r.counts()[i];
            }
        }
        e.unitTotals = totals;
        e.last = r;
        return e;
    }

    /**
     * Drops the nodes whose newest sample is at or before {@code cutoff} (epoch seconds), and the heat maps of versions
     * none of the remaining nodes runs.
     *
     * @return the nodes dropped.
     */
    synchronized List<NodeEntry> expire(final long cutoff)
    {
        final List<NodeEntry> gone = new ArrayList<>();
        nodes.values().removeIf(e ->
        {
            final boolean stale = e.series.last() <= cutoff;
            if (stale)
            {
                gone.add(e);
            }
            return stale;
        });
        if (!gone.isEmpty())
        {
            final java.util.Set<String> live = new java.util.HashSet<>();
            nodes.values().forEach(e -> live.add(e.version));
            heat.keySet().retainAll(live);
        }
        return gone;
    }

    synchronized List<NodeEntry> nodes()
    {
        return List.copyOf(nodes.values());
    }

    synchronized Map<String, Heat> heat()
    {
        return Map.copyOf(heat);
    }

    /**
     * NaN and infinities as null (JSON has no such numbers); whole numbers as integers, others at float precision
     * (7 digits, plenty for a plot, and about twice as fast to write as a double: the JSON of 16 nodes x 15 minutes is
     * 300 thousand numbers).
     */
    static void number(final JsonGenerator json, final double d) throws IOException
    {
        if (d == Math.rint(d) && Math.abs(d) < 1e15)
        {
            json.writeNumber((long)d);
        }
        else if (Double.isFinite(d))
        {
            json.writeNumber((float)d);
        }
        else
        {
            json.writeNull();
        }
    }
}
