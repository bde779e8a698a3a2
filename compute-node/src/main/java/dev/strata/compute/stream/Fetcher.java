package dev.strata.compute.stream;

import dev.strata.paramclient.BlockClient;
import dev.strata.transport.BlockId;
import dev.strata.transport.sbe.Status;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.NanoClock;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The one owner of a node's connection to the block server, as an Agrona {@link Agent}: each duty cycle it takes
 * the next unit to fetch from its {@link Queue} (demand before prefetch; prefetch bytes in flight bounded),
 * cancels the requests of wrong guesses, sends prefetch hints, polls the connection and completes units whose
 * blocks all arrived. A failed fetch (service gone, timeout, {@code UNAVAILABLE}, {@code BUSY}) resets the
 * connection and is retried after a pause, until the unit's retry deadline; any other status fails the unit at
 * once. Driven by an {@code AgentRunner} in production and by calls to {@link #doWork()} in tests.
 */
final class Fetcher implements Agent
{
    /** Prefetch bytes in flight at most (at least one unit always goes): bounds what a wrong guess can cost. */
    static final long MAX_PREFETCH_INFLIGHT_BYTES = 64L << 20;
    /** Pause before a failed unit is asked again: do not hammer a restarting service. */
    static final long RETRY_PAUSE_NANOS = 50_000_000L;

    /** The streaming source's side: its queues and unit states, under its lock. */
    interface Queue
    {
        /** The next unit to fetch, marked fetching; a prefetch only if {@code inflightBytes} leave room. */
        Slot nextFetch(long inflightBytes);

        /** The next unit to announce to the service, or null. */
        Slot nextHint();

        /** The next guess in flight that turned out wrong and is still unwanted, or null. */
        Slot nextCancel();

        /** A wrong guess's requests are cancelled: nothing more lands in its buffer. */
        void cancelled(Slot s);

        /** Every block of the unit landed in its buffer. */
        void arrived(Slot s);

        /** The unit cannot be fetched. */
        void failed(Slot s, IOException cause);

        /** Queue the unit again, ahead of the others of its kind. */
        void retry(Slot s);
    }

    /** The block server as the fetcher uses it ({@link BlockChannel} in production). */
    interface Blocks extends AutoCloseable
    {
        long submitInto(String version, List<BlockId> ids, MemorySegment dest, long[] offsets, long timeoutNanos,
            int priority, long neededInNanos) throws IOException;

        boolean hint(String version, List<BlockId> ids, long timeoutNanos) throws IOException;

        int poll() throws IOException;

        boolean isDone(long correlationId);

        /** Completes a done request, throwing its failure. */
        void await(long correlationId) throws IOException;

        void cancel(long correlationId);

        /** Drops the connection; the next call connects again (endpoints looked up anew). */
        void reset();

        @Override
        void close();
    }

    private record Request(Slot slot, long correlationId)
    {
    }

    private record Backoff(Slot slot, long dueNanos)
    {
    }

    private final Queue queue;
    private final Blocks blocks;
    private final String version;
    private final long requestTimeout;
    private final long hintTimeout;
    private final NanoClock clock;
    private final List<Request> inflight = new ArrayList<>();
    private final List<Backoff> backoff = new ArrayList<>();
    private volatile long hintsSent;

    /**
     * @param version        {@code model@number} every request names.
     * @param requestTimeout wait for one request before retrying it.
     * @param hintTimeout    how long a hint stays valid at the service.
     */
    Fetcher(final Queue queue, final Blocks blocks, final String version, final long requestTimeout,
        final long hintTimeout, final NanoClock clock)
    {
        this.queue = queue;
        this.blocks = blocks;
        this.version = version;
        this.requestTimeout = requestTimeout;
        this.hintTimeout = hintTimeout;
        this.clock = clock;
    }

    @Override
    public String roleName()
    {
        return "strata-fetcher";
    }

    @Override
    public int doWork()
    {
        int work = retryDue();
        final Slot next = queue.nextFetch(inflightBytes());
        if (next != null)
        {
            work++;
            submit(next);
        }
        work += cancelWrongGuesses();
        final Slot hint = queue.nextHint();
        if (hint != null)
        {
            work++;
            sendHint(hint);
        }
        if (!inflight.isEmpty())
        {
            try
            {
                work += blocks.poll();
                for (int i = 0; i < inflight.size(); i++)
                {
                    final Request r = inflight.get(i);
                    if (blocks.isDone(r.correlationId()))
                    {
                        inflight.remove(i--);
                        work++;
                        complete(r);
                    }
                }
            }
            catch (final IOException ex)
            {
                retryAll(ex);
            }
        }
        return work;
    }

    @Override
    public void onClose()
    {
        blocks.close();
    }

    /** Prefetch hints sent to the service. */
    long hintsSent()
    {
        return hintsSent;
    }

    /** Whether requests are in flight (units fetching) or waiting to be retried. */
    boolean busy()
    {
        return !inflight.isEmpty() || !backoff.isEmpty();
    }

    private int retryDue()
    {
        int n = 0;
        final long now = clock.nanoTime();
        for (int i = 0; i < backoff.size(); i++)
        {
            if (backoff.get(i).dueNanos() - now <= 0)
            {
                queue.retry(backoff.remove(i--).slot());
                n++;
            }
        }
        return n;
    }

    private long inflightBytes()
    {
        return inflight.stream().map(Request::slot).distinct().mapToLong(Slot::bytes).sum();
    }

    private void submit(final Slot s)
    {
        final UnitLayout.Unit u = s.unit;
        try
        {
            for (int from = 0; from < u.blocks().size(); from += BlockClient.MAX_BLOCKS_PER_REQUEST)
            {
                final int to = Math.min(u.blocks().size(), from + BlockClient.MAX_BLOCKS_PER_REQUEST);
                final long[] offsets = java.util.Arrays.copyOfRange(u.offsets(), from, to);
                inflight.add(new Request(s, blocks.submitInto(version, u.blocks().subList(from, to), s.buffer, offsets,
                    requestTimeout, s.demand ? 0 : 1, Math.max(0, s.neededBy - clock.nanoTime()))));
            }
        }
        catch (final IOException ex)
        {
            inflight.removeIf(r -> r.slot() == s);
            blocks.reset();
            failOrRetry(s, ex);
        }
    }

    /**
     * Cancels the requests of guesses in flight that the router did not pick. Once the connection has forgotten
     * a request nothing more is written into the unit's buffer, so it can go back to the pool at once.
     */
    private int cancelWrongGuesses()
    {
        int n = 0;
        Slot s;
        while ((s = queue.nextCancel()) != null)
        {
            for (int i = 0; i < inflight.size(); i++)
            {
                final Request r = inflight.get(i);
                if (r.slot() == s)
                {
                    inflight.remove(i--);
                    blocks.cancel(r.correlationId());
                }
            }
            queue.cancelled(s);
            n++;
        }
        return n;
    }

    private void sendHint(final Slot s)
    {
        final List<BlockId> ids = s.unit.blocks();
        try
        {
            for (int from = 0; from < ids.size(); from += BlockClient.MAX_BLOCKS_PER_REQUEST)
            {
                if (blocks.hint(version, ids.subList(from, Math.min(ids.size(), from + BlockClient.MAX_BLOCKS_PER_REQUEST)),
                    hintTimeout))
                {
                    hintsSent++;
                }
            }
        }
        catch (final IOException ex)
        {
            // a hint is advice: a service that cannot take it now loses nothing
        }
    }

    private void complete(final Request r)
    {
        final Slot s = r.slot();
        try
        {
            blocks.await(r.correlationId());
        }
        catch (final IOException ex)
        {
            inflight.removeIf(x -> x.slot() == s);
            final Status status = ex instanceof BlockClient.FetchException f ? f.status() : null;
            if (status == null || status == Status.UNAVAILABLE || status == Status.BUSY)
            {
                // the service may have restarted elsewhere: look its endpoints up again, and ask for all again
                retryAll(ex);
                failOrRetry(s, ex);
            }
            else
            {
                queue.failed(s, new IOException("cannot be fetched: " + ex.getMessage(), ex));
            }
            return;
        }
        for (final Request other : inflight)
        {
            if (other.slot() == s)
            {
                return; // more requests of this unit still to come
            }
        }
        queue.arrived(s);
    }

    private void retryAll(final Exception cause)
    {
        final List<Slot> again = inflight.stream().map(Request::slot).distinct().toList();
        inflight.clear();
        blocks.reset();
        for (final Slot s : again)
        {
            failOrRetry(s, cause);
        }
    }

    /** Retries the unit after a pause, unless it has been retried for too long. */
    private void failOrRetry(final Slot s, final Exception cause)
    {
        if (clock.nanoTime() - s.retryUntil > 0)
        {
            queue.failed(s, new IOException("the parameter service did not deliver it in time: " + cause.getMessage(),
                cause));
            return;
        }
        backoff.add(new Backoff(s, clock.nanoTime() + RETRY_PAUSE_NANOS));
    }
}
