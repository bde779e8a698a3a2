package dev.strata.prefetch;

import java.util.TreeMap;

/**
 * A what-if replay: runs a recorded {@link LayerTrace} through a model of the node's unit cache under other
 * settings (budget, look-ahead, prefetch on or off, link bandwidth), and reports hits, misses, bytes moved and an
 * estimate of the stall time.
 * <p>
 * The model takes the node's decisions with the node's own {@link PrefetchPlanner} and the same rules as the
 * streaming source: an access pins its layer (a demand fetch when absent, after making room by evicting the
 * unpinned unit needed farthest ahead); then the next layers the planner names are prefetched, the first one
 * allowed to evict a unit needed later than itself, deeper ones only into free room; buffers of evicted units are
 * pooled by size and count in the budget. With a fixed look-ahead these decisions depend on the order of accesses
 * only, not on timings, so replaying a trace under the settings it was recorded with gives the recorded hit and
 * miss counts. Timings enter through the stall estimate and, with the adaptive look-ahead, through when a
 * prefetch counts as late: the link is modelled as one queue at {@code linkBytesPerSecond}, a demand fetch going
 * before queued prefetches, and the compute time between accesses is the recorded gap minus the recorded wait.
 * <p>
 * A hit here is an access that needed no demand fetch (its unit resident, or its prefetch in flight: the node's
 * {@code h} and {@code l}); a miss is a demand fetch ({@code d}).
 */
public final class TraceReplay
{
    /** The outcome of one replay. */
    public record Result(LayerTrace.Settings settings, long accesses, long hits, long late, long misses,
        long prefetches, long wasted, long bytesMoved, double stallMillis, double stallMillisPerToken)
    {
        public double hitRate()
        {
            return accesses == 0 ? Double.NaN : (double)hits / accesses;
        }

        /** The figures by their names in the CLI's and the admin API's JSON (null: not known for a recorded run). */
        public java.util.Map<String, Object> fields()
        {
            final java.util.Map<String, Object> m = new java.util.LinkedHashMap<>();
            m.put("budget_bytes", settings.budgetBytes());
            m.put("lookahead", settings.lookahead());
            m.put("prefetch", settings.prefetch());
            m.put("link_bytes_per_second", settings.linkBytesPerSecond());
            m.put("accesses", accesses);
            m.put("hits", hits);
            m.put("misses", misses);
            m.put("late", late);
            m.put("hit_rate", Double.isFinite(hitRate()) ? hitRate() : null);
            m.put("prefetches", prefetches < 0 ? null : prefetches);
            m.put("wasted", wasted < 0 ? null : wasted);
            m.put("bytes_moved", bytesMoved < 0 ? null : bytesMoved);
            m.put("stall_ms", stallMillis);
            m.put("stall_ms_per_token", Double.isFinite(stallMillisPerToken) ? stallMillisPerToken : null);
            return m;
        }
    }

    private TraceReplay()
    {
    }

    /** The figures the trace itself recorded (hits counted as {@code h} plus {@code l}). */
    public static Result recorded(final LayerTrace trace)
    {
        final LayerTrace.Settings s = trace.settings();
        long stall = 0;
        long moved = 0;
        for (int i = 0; i < trace.size(); i++)
        {
            stall += trace.waited()[i];
            moved += trace.outcome()[i] == LayerTrace.DEMAND ? s.layerBytes()[trace.layer()[i]] : 0;
        }
        final long tokens = tokens(trace);
        return new Result(s, trace.size(), trace.count(LayerTrace.HIT) + trace.count(LayerTrace.LATE),
            trace.count(LayerTrace.LATE), trace.count(LayerTrace.DEMAND), -1, -1, -1, stall / 1e6,
            tokens == 0 ? Double.NaN : stall / 1e6 / tokens);
    }

    private static long tokens(final LayerTrace trace)
    {
        final int last = trace.settings().layers() - 1;
        long n = 0;
        for (final int l : trace.layer())
        {
            n += l == last ? 1 : 0;
        }
        return n;
    }

    /**
     * Replays {@code trace} under {@code settings} (its layer and global sizes must be the trace's).
     *
     * @throws IllegalArgumentException when the budget cannot hold the globals and the largest layer.
     */
    public static Result replay(final LayerTrace trace, final LayerTrace.Settings settings)
    {
        return new Run(settings).run(trace);
    }

    /** One replay's state: the units, the pool and the link. */
    private static final class Run
    {
        private final LayerTrace.Settings s;
        private final int layers;
        private final PrefetchPlanner planner;
        private final boolean[] present;
        private final boolean[] prefetched;
        private final boolean[] used;
        private final int[] pins;
        private final long[] arrival;
        /** Pooled (free) buffers by size. */
        private final TreeMap<Long, Integer> pooled = new TreeMap<>();
        private long usedBytes;
        private long linkFree;
        private long hits;
        private long late;
        private long misses;
        private long prefetches;
        private long wasted;
        private long moved;
        private long stall;

        Run(final LayerTrace.Settings s)
        {
            this.s = s;
            this.layers = s.layers();
            long largest = 0;
            for (final long b : s.layerBytes())
            {
                largest = Math.max(largest, b);
            }
            if (s.budgetBytes() < s.globalsBytes() + largest)
            {
                throw new IllegalArgumentException("invalid budget=" + s.budgetBytes() + ": the node needs at least " +
                    (s.globalsBytes() + largest) + " (the global tensors plus the largest layer)");
            }
            this.planner = new PrefetchPlanner(layers, 0, 0, Math.max(s.maxLookahead(), Math.max(1, s.lookahead())));
            planner.fixLookahead(s.lookahead());
            present = new boolean[layers];
            prefetched = new boolean[layers];
            used = new boolean[layers];
            pins = new int[layers];
            arrival = new long[layers];
            usedBytes = s.globalsBytes(); // resident for good
        }

        Result run(final LayerTrace trace)
        {
            long now = 0;
            long previousAt = 0;
            long previousWait = 0;
            for (int i = 0; i < trace.size(); i++)
            {
                // compute time since the previous access, as recorded (its wait taken out)
                now += Math.max(0, trace.atNanos()[i] - previousAt - previousWait);
                previousAt = trace.atNanos()[i];
                previousWait = trace.waited()[i];
                final int layer = trace.layer()[i];
                planner.onAcquire(0, layer, now);
                now += pin(layer, now);
                if (s.prefetch())
                {
                    prefetchAfter(layer, now);
                }
                pins[layer]--;
            }
            final long tokens = tokens(trace);
            return new Result(s, trace.size(), hits, late, misses, prefetches, wasted, moved, stall / 1e6,
                tokens == 0 ? Double.NaN : stall / 1e6 / tokens);
        }

        /** Pins a layer; returns the time waited. */
        private long pin(final int layer, final long now)
        {
            final long bytes = s.layerBytes()[layer];
            if (present[layer])
            {
                pins[layer]++;
                hits++;
                long waited = 0;
                if (arrival[layer] > now)
                {
                    waited = arrival[layer] - now;
                    late++;
                    if (prefetched[layer] && !used[layer])
                    {
                        planner.late();
                    }
                }
                used[layer] = true;
                stall += waited;
                return waited;
            }
            if (!makeRoom(layer, true))
            {
                throw new IllegalStateException("a budget of " + s.budgetBytes() + " bytes cannot hold layer " + layer);
            }
            pins[layer]++;
            take(layer, bytes);
            prefetched[layer] = false;
            used[layer] = true;
            misses++;
            // a demand fetch goes before queued prefetches
            final long transfer = transferNanos(bytes);
            final long waited = transfer;
            linkFree = Math.max(linkFree, now) + transfer;
            arrival[layer] = now + transfer;
            stall += waited;
            return waited;
        }

        private void prefetchAfter(final int layer, final long now)
        {
            boolean first = true;
            for (final int next : planner.layersAfter(layer))
            {
                if (present[next])
                {
                    first = false;
                    continue;
                }
                final long bytes = s.layerBytes()[next];
                if (first ? !makeRoom(next, false) : !fits(bytes))
                {
                    break;
                }
                first = false;
                take(next, bytes);
                prefetched[next] = true;
                used[next] = false;
                linkFree = Math.max(linkFree, now) + transferNanos(bytes);
                arrival[next] = linkFree;
                prefetches++;
            }
        }

        private long transferNanos(final long bytes)
        {
            return (long)(bytes * 1e9 / s.linkBytesPerSecond());
        }

        private boolean fits(final long bytes)
        {
            return usedBytes + bytes <= s.budgetBytes();
        }

        private void take(final int layer, final long bytes)
        {
            final Integer free = pooled.get(bytes);
            if (free != null && free > 0)
            {
                pooled.put(bytes, free - 1);
            }
            else
            {
                usedBytes += bytes;
            }
            present[layer] = true;
            moved += bytes;
        }

        private boolean makeRoom(final int target, final boolean demand)
        {
            final long bytes = s.layerBytes()[target];
            final Integer free = pooled.get(bytes);
            if (free != null && free > 0)
            {
                return true;
            }
            while (!fits(bytes))
            {
                if (releaseOnePooled())
                {
                    continue;
                }
                int victim = -1;
                long farthest = -1;
                for (int v = 0; v < layers; v++)
                {
                    if (present[v] && pins[v] == 0 && v != target)
                    {
                        final long d = planner.distance(v, -1);
                        if (d > farthest)
                        {
                            farthest = d;
                            victim = v;
                        }
                    }
                }
                if (victim < 0)
                {
                    return false;
                }
                if (!demand && farthest <= planner.distance(target, -1))
                {
                    return false;
                }
                evict(victim);
                if (s.layerBytes()[victim] == bytes)
                {
                    return true;
                }
            }
            return true;
        }

        private boolean releaseOnePooled()
        {
            for (final var e : pooled.entrySet())
            {
                if (e.getValue() > 0)
                {
                    e.setValue(e.getValue() - 1);
                    usedBytes -= e.getKey();
                    return true;
                }
            }
            return false;
        }

        private void evict(final int v)
        {
            if (prefetched[v] && !used[v])
            {
                wasted++;
                planner.wasted();
            }
            present[v] = false;
            pooled.merge(s.layerBytes()[v], 1, Integer::sum);
        }
    }
}
