package dev.strata.prefetch;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;

import java.util.concurrent.atomic.AtomicLong;

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
 * Thread-safe; also exported as Micrometer meters ({@code strata.prefetch.*}).
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
        return this;
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
