package dev.strata.compute.stream;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.model.ModelConfig;
import dev.strata.compute.model.WeightViews;
import dev.strata.compute.tensor.Kernels;
import dev.strata.compute.tensor.WeightTensor;
import dev.strata.paramclient.Manifest;
import dev.strata.prefetch.PrefetchStats;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.concurrent.CancellationException;

/**
 * The queues between a {@link StreamingWeightSource} and its {@link Fetcher}, and what happens to a unit when the
 * fetcher is done with it (arrived: weights built over its buffer; failed; cancelled; to retry). Every access holds
 * the source's lock ({@code lock}); a state change that frees room wakes callers waiting for it.
 */
final class FetchQueues implements Fetcher.Queue
{
    /** Units needed now, first come first served. */
    final ArrayDeque<Slot> demand = new ArrayDeque<>();
    /** Units predicted, nearest first. */
    final ArrayDeque<Slot> prefetch = new ArrayDeque<>();
    /** Units to announce to the service (a {@code PrefetchHint}: promote toward its memory tier). */
    final ArrayDeque<Slot> hints = new ArrayDeque<>();
    /** Guesses in flight that turned out wrong: the fetcher cancels their requests and frees their room. */
    final ArrayDeque<Slot> cancels = new ArrayDeque<>();

    private final Object lock;
    private final UnitPool pool;
    private final PrefetchStats stats;
    private final UnitLayout layout;
    private final RemoteModel model;
    private final ModelConfig config;
    private final boolean expertUnits;
    /** The layout the products want ({@link #prepare}), selected as the forward pass's are. */
    private final Kernels kernels = Kernels.fromSystemProperties();

    FetchQueues(final Object lock, final UnitPool pool, final PrefetchStats stats, final UnitLayout layout,
        final RemoteModel model, final boolean expertUnits)
    {
        this.lock = lock;
        this.pool = pool;
        this.stats = stats;
        this.layout = layout;
        this.model = model;
        this.config = model.config();
        this.expertUnits = expertUnits;
    }

    @Override
    public Slot nextFetch(final long inflightBytes)
    {
        synchronized (lock)
        {
            Slot next = demand.pollFirst();
            final Slot head = prefetch.peekFirst();
            if (next == null && head != null &&
                (inflightBytes == 0 || inflightBytes + head.bytes() <= Fetcher.MAX_PREFETCH_INFLIGHT_BYTES))
            {
                next = prefetch.pollFirst();
            }
            if (next != null)
            {
                next.state = Slot.State.FETCHING;
            }
            return next;
        }
    }

    @Override
    public Slot nextHint()
    {
        synchronized (lock)
        {
            return hints.pollFirst();
        }
    }

    @Override
    public Slot nextCancel()
    {
        synchronized (lock)
        {
            Slot s;
            while ((s = cancels.pollFirst()) != null)
            {
                if (s.state == Slot.State.FETCHING && !s.demand && s.pins == 0)
                {
                    return s; // still unwanted (not arrived meanwhile, nor wanted after all)
                }
            }
            return null;
        }
    }

    @Override
    public void cancelled(final Slot s)
    {
        synchronized (lock)
        {
            pool.recycle(s.buffer);
            s.buffer = null;
            s.state = Slot.State.ABSENT;
            lock.notifyAll();
        }
        s.ready.completeExceptionally(new CancellationException("unused guess"));
        stats.cancelled(true);
    }

    @Override
    public void arrived(final Slot s)
    {
        try
        {
            buildViews(s);
        }
        catch (final RuntimeException ex)
        {
            failed(s, new IOException("is malformed: " + ex.getMessage(), ex));
            return;
        }
        synchronized (lock)
        {
            s.state = Slot.State.RESIDENT;
            lock.notifyAll(); // unpinned, it can be evicted for a caller waiting for room
        }
        stats.fetched(s.bytes());
        stats.fetchLatency(System.nanoTime() - s.scheduledAt);
        s.ready.complete(null);
    }

    @Override
    public void failed(final Slot s, final IOException cause)
    {
        synchronized (lock)
        {
            s.layer = null;
            if (s.buffer != null)
            {
                pool.release(s.buffer);
                s.buffer = null;
            }
            s.state = Slot.State.ABSENT;
            lock.notifyAll();
        }
        s.ready.completeExceptionally(new IOException(layout.describe(s.unit) + " of " + model.pinned() + " " +
            cause.getMessage(), cause));
    }

    @Override
    public void retry(final Slot s)
    {
        synchronized (lock)
        {
            s.state = Slot.State.QUEUED;
            (s.demand ? demand : prefetch).addFirst(s);
        }
    }

    /** Builds the weights over a unit's buffer once all its blocks landed (on the fetcher's thread). */
    private void buildViews(final Slot s)
    {
        final UnitLayout.Unit u = s.unit;
        final WeightViews.Lookup lookup = name ->
        {
            final long[] span = u.spans().get(name);
            if (span == null)
            {
                return null;
            }
            final Manifest.Tensor t = model.tensor(name);
            return new WeightViews.Tensor(GgmlType.valueOf(t.type()), t.shape(), s.buffer.asSlice(span[0], span[1]));
        };
        if (u.expert() >= 0)
        {
            final String[] n = WeightViews.expertTensorNames(u.layerOf());
            final WeightViews.Tensor g = lookup.tensor(n[0]);
            s.expertWeights = WeightViews.map(WeightViews.expert(config, u.layerOf(), u.expert(), g.type(), g.data(),
                lookup.tensor(n[1]).data(), lookup.tensor(n[2]).data()), this::prepare);
        }
        else if (u.index() == layout.layers())
        {
            s.globals = WeightViews.map(WeightViews.globals(lookup, config), this::prepare);
        }
        else
        {
            s.layer = WeightViews.map(WeightViews.layer(lookup, config, u.index(), !expertUnits), this::prepare);
        }
    }

    /**
     * The kernels' layout (Q4_0 repacked on VNNI), in place: the unit's buffer is this node's own and is read only
     * through these views until it is evicted and refilled, so the repack costs no memory.
     */
    private WeightTensor prepare(final WeightTensor w)
    {
        return kernels.prepare(w, null);
    }
}
