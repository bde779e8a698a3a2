package dev.strata.prefetch;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * How well prefetching served a compute node, counted per unit access:
 * <ul>
 * <li><b>accuracy</b>: prefetched units that were used before being evicted, over all prefetched units settled
 * (used or evicted unused);</li>
 * <li><b>coverage</b>: accesses a prefetch had covered (arrived in time, or at least in flight), over accesses that
 * needed a fetch at all (those plus demand fetches);</li>
 * <li><b>timeliness</b>: covered accesses whose prefetch had arrived, over all covered accesses;</li>
 * <li><b>wasted bytes</b>: bytes prefetched and evicted unused;</li>
 * <li><b>stall time per token</b>: time the forward pass waited for weights, over tokens.</li>
 * </ul>
 * Thread-safe; also exported as Micrometer meters ({@code strata.prefetch.*}). Once {@link #units} has named the
 * units, accesses are also counted per unit ({@code strata.prefetch.unit.accesses} tagged with layer and expert:
 * the dashboard's heat map), and unit fetch latencies are kept for the last reporting interval
 * ({@link #drainFetchLatencies}).
 */
public final class PrefetchStats
{
    private final AtomicLong accesses = new AtomicLong();
    private final AtomicLong resident = new AtomicLong();
    private final AtomicLong prefetchTimely = new AtomicLong();
    private final AtomicLong prefetchLate = new AtomicLong();
    private final AtomicLong demandFetches = new AtomicLong();
    private final AtomicLong prefetchIssued = new AtomicLong();
    private final AtomicLong prefetchUsed = new AtomicLong();
    private final AtomicLong prefetchWasted = new AtomicLong();
    private final AtomicLong wastedBytes = new AtomicLong();
    private final AtomicLong cancelled = new AtomicLong();
    private final AtomicLong cancelledInFlight = new AtomicLong();
    private final AtomicLong fetchedBytes = new AtomicLong();
    private final AtomicLong stallNanos = new AtomicLong();
    private final AtomicLong tokens = new AtomicLong();
    /** Accesses per unit: layer l at l, expert e of layer l at layers + l * experts + e; null until {@link #units}. */
    private volatile AtomicLongArray unitAccesses;
    private int layers;
    private int experts;
    /** Unit fetch latencies (nanoseconds) since the last drain; at most {@link #MAX_LATENCIES} kept. */
    private long[] latencies = new long[256];
    private int latencyCount;
    private long latencyDropped;
    private final AtomicLong fetchNanosTotal = new AtomicLong();
    private final AtomicLong sampled = new AtomicLong();
    private final AtomicLong fetchesTimed = new AtomicLong();
    private static final int MAX_LATENCIES = 1 << 16;

    /** The figures at one moment. */
    public record Report(long accesses, long demandFetches, long prefetchIssued, long cancelled, double accuracy,
        double coverage, double timeliness, long wastedBytes, long fetchedBytes, double stallMillisPerToken,
        long tokens, long cancelledInFlight)
    {
    }

    /** Registers the meters; call once per registry. */
    public PrefetchStats register(final MeterRegistry registry)
    {
        FunctionCounter.builder("strata.prefetch.accesses", accesses, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.demand.fetches", demandFetches, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.issued", prefetchIssued, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.wasted.bytes", wastedBytes, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.cancelled", cancelled, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.cancelled.inflight", cancelledInFlight, AtomicLong::get)
            .register(registry);
        FunctionCounter.builder("strata.prefetch.fetched.bytes", fetchedBytes, AtomicLong::get).register(registry);
        FunctionCounter.builder("strata.prefetch.stall.seconds", stallNanos, n -> n.get() / 1e9).register(registry);
        Gauge.builder("strata.prefetch.accuracy", this, s -> s.report().accuracy()).register(registry);
        Gauge.builder("strata.prefetch.coverage", this, s -> s.report().coverage()).register(registry);
        Gauge.builder("strata.prefetch.timeliness", this, s -> s.report().timeliness()).register(registry);
        final AtomicLongArray perUnit = unitAccesses;
        if (perUnit != null)
        {
            for (int u = 0; u < perUnit.length(); u++)
            {
                final int unit = u;
                final boolean expert = unit >= layers;
                FunctionCounter.builder("strata.prefetch.unit.accesses", perUnit, a -> a.get(unit))
                    .tag("layer", Integer.toString(expert ? (unit - layers) / experts : unit))
                    .tag("expert", expert ? Integer.toString((unit - layers) % experts) : "none")
                    .register(registry);
            }
        }
        return this;
    }

    /**
     * Names the units accesses are counted per: {@code layers} layer units, and {@code experts} expert units per
     * layer when experts are streamed one by one (else 0). Call once, before {@link #register}.
     */
    public PrefetchStats units(final int layers, final int experts)
    {
        if (layers < 1 || experts < 0)
        {
            throw new IllegalArgumentException("invalid units: layers=" + layers + " experts=" + experts);
        }
        this.layers = layers;
        this.experts = experts;
        this.unitAccesses = new AtomicLongArray(layers + layers * experts);
        return this;
    }

    /** Layers named by {@link #units} (0 before). */
    public int layers()
    {
        return layers;
    }

    /** Experts per layer named by {@link #units}. */
    public int experts()
    {
        return experts;
    }

    /** Counts an access of layer {@code layer} ({@code expert} -1) or of one of its experts. */
    public void unitAccess(final int layer, final int expert)
    {
        final AtomicLongArray a = unitAccesses;
        if (a != null)
        {
            a.incrementAndGet(expert < 0 ? layer : layers + layer * experts + expert);
        }
    }

    /** Accesses per unit so far (see {@link #units} for the numbering); empty before {@link #units}. */
    public long[] unitAccesses()
    {
        final AtomicLongArray a = unitAccesses;
        final long[] out = new long[a == null ? 0 : a.length()];
        for (int i = 0; i < out.length; i++)
        {
            out[i] = a.get(i);
        }
        return out;
    }

    /** A unit fetch completed after {@code nanos} (from its request to its last block). */
    public synchronized void fetchLatency(final long nanos)
    {
        fetchNanosTotal.addAndGet(nanos);
        fetchesTimed.incrementAndGet();
        if (latencyCount == latencies.length)
        {
            if (latencies.length >= MAX_LATENCIES)
            {
                latencyDropped++;
                return;
            }
            latencies = Arrays.copyOf(latencies, latencies.length * 2);
        }
        latencies[latencyCount++] = nanos;
    }

    /** The unit fetch latencies since the last call, sorted; the reporter turns them into P50 and P99. */
    public synchronized long[] drainFetchLatencies()
    {
        final long[] out = Arrays.copyOf(latencies, latencyCount);
        latencyCount = 0;
        Arrays.sort(out);
        return out;
    }

    /** The {@code q} quantile (0..1) of sorted values, nearest rank; -1 when there are none. */
    public static long quantile(final long[] sorted, final double q)
    {
        if (sorted.length == 0)
        {
            return -1;
        }
        final int rank = (int)Math.ceil(q * sorted.length);
        return sorted[Math.clamp(rank - 1, 0, sorted.length - 1)];
    }

    /**
     * Bytes fetched over the time fetches took (request to last block, summed): the link as the node saw it, queueing
     * behind other fetches included; 0 before any fetch was timed.
     */
    public long observedLinkBytesPerSecond()
    {
        final long nanos = fetchNanosTotal.get();
        return nanos == 0 ? 0 : (long)(fetchedBytes.get() * 1e9 / nanos);
    }

    /** The engine sampled {@code count} tokens in one step (a batched step decodes one per sequence). */
    public void sampled(final int count)
    {
        sampled.addAndGet(count);
    }

    /** Tokens sampled so far (0 where the forward pass does not count them; {@link Report#tokens} are passes). */
    public long sampledTokens()
    {
        return sampled.get();
    }

    /** Stall time so far, in nanoseconds. */
    public long stallNanos()
    {
        return stallNanos.get();
    }

    /** An access found its unit resident; {@code firstUseOfPrefetch} if a prefetch brought it and this is its first use. */
    public void hit(final boolean firstUseOfPrefetch)
    {
        accesses.incrementAndGet();
        resident.incrementAndGet();
        if (firstUseOfPrefetch)
        {
            prefetchTimely.incrementAndGet();
            prefetchUsed.incrementAndGet();
        }
    }

    /** An access found its prefetch still in flight and waited. */
    public void late(final long waitedNanos)
    {
        accesses.incrementAndGet();
        prefetchLate.incrementAndGet();
        prefetchUsed.incrementAndGet();
        stallNanos.addAndGet(waitedNanos);
    }

    /** An access needed a fetch nobody had started. */
    public void demand(final long waitedNanos)
    {
        accesses.incrementAndGet();
        demandFetches.incrementAndGet();
        stallNanos.addAndGet(waitedNanos);
    }

    public void prefetchIssued()
    {
        prefetchIssued.incrementAndGet();
    }

    /**
     * A prefetch turned out not to be needed and was dropped: still queued on the node, or ({@code inFlight}) with
     * its requests cancelled at the service. It counts against accuracy.
     */
    public void cancelled(final boolean inFlight)
    {
        cancelled.incrementAndGet();
        if (inFlight)
        {
            cancelledInFlight.incrementAndGet();
        }
    }

    /** A prefetched unit left memory without being used. */
    public void wasted(final long bytes)
    {
        prefetchWasted.incrementAndGet();
        wastedBytes.addAndGet(bytes);
    }

    public void fetched(final long bytes)
    {
        fetchedBytes.addAndGet(bytes);
    }

    public void token()
    {
        tokens.incrementAndGet();
    }

    public Report report()
    {
        final long used = prefetchUsed.get();
        final long settled = used + prefetchWasted.get() + cancelled.get();
        final long covered = prefetchTimely.get() + prefetchLate.get();
        final long needed = covered + demandFetches.get();
        return new Report(accesses.get(), demandFetches.get(), prefetchIssued.get(), cancelled.get(),
            settled == 0 ? Double.NaN : (double)used / settled,
            needed == 0 ? Double.NaN : (double)covered / needed,
            covered == 0 ? Double.NaN : (double)prefetchTimely.get() / covered,
            wastedBytes.get(), fetchedBytes.get(),
            tokens.get() == 0 ? Double.NaN : stallNanos.get() / 1e6 / tokens.get(), tokens.get(),
            cancelledInFlight.get());
    }
}
