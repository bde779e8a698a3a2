package dev.strata.compute.stream;

import dev.strata.paramclient.BlockClient;
import dev.strata.transport.BlockId;
import dev.strata.transport.sbe.Status;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The fetcher agent driven by hand, one duty cycle at a time, over a fake block server and a fake clock. */
class FetcherTest
{
    private long now = 1_000_000_000L;
    private final FakeQueue queue = new FakeQueue();
    private final FakeBlocks blocks = new FakeBlocks();
    private final Fetcher fetcher = new Fetcher(queue, blocks, "m@1", 5_000_000_000L, 1_000_000_000L, () -> now);

    private static Slot slot(final int index, final int blockCount)
    {
        final List<BlockId> ids = new ArrayList<>();
        for (int i = 0; i < blockCount; i++)
        {
            ids.add(BlockId.of(new byte[]{(byte)index, (byte)i, (byte)(i >> 8)}));
        }
        final Slot s = new Slot(new UnitLayout.Unit(index, index, -1, ids, new long[blockCount], Map.of(),
            64L * blockCount));
        s.buffer = Arena.ofAuto().allocate(s.bytes());
        s.ready = new CompletableFuture<>();
        return s;
    }

    @Test
    void shouldCompleteAUnitOnlyWhenEveryRequestOfItIsDone()
    {
        final Slot big = slot(0, 2 * BlockClient.MAX_BLOCKS_PER_REQUEST + 1);
        big.demand = true;
        queue.fetch.add(big);
        fetcher.doWork();
        assertEquals(3, blocks.submitted.size(), "one request per 1000 blocks");
        assertEquals(List.of(0, 0, 0), blocks.priorities, "a demand fetch asks with priority 0");
        blocks.done.add(blocks.submitted.get(0));
        blocks.done.add(blocks.submitted.get(2));
        fetcher.doWork();
        assertTrue(queue.arrived.isEmpty(), "one request is still in flight");
        blocks.done.add(blocks.submitted.get(1));
        fetcher.doWork();
        assertEquals(List.of(big), queue.arrived);
        assertFalse(fetcher.busy());
    }

    @Test
    void shouldRetryAnUnavailableServiceAfterAPauseOnAFreshConnectionThenGiveUp()
    {
        final Slot s = slot(1, 1);
        s.retryUntil = now + 200_000_000L;
        queue.fetch.add(s);
        fetcher.doWork();
        blocks.fail(blocks.submitted.getFirst(), new BlockClient.FetchException(Status.UNAVAILABLE, "gone"));
        fetcher.doWork();
        assertEquals(1, blocks.resets, "the connection is dropped: the endpoints are looked up again");
        assertTrue(queue.retried.isEmpty() && queue.failed.isEmpty());
        now += Fetcher.RETRY_PAUSE_NANOS - 1;
        fetcher.doWork();
        assertTrue(queue.retried.isEmpty(), "not before the pause");
        now += 1;
        fetcher.doWork();
        assertEquals(List.of(s), queue.retried);

        queue.fetch.add(s);
        fetcher.doWork();
        now += 300_000_000L; // past the unit's retry deadline
        blocks.fail(blocks.submitted.getLast(), new BlockClient.FetchException(null, "timed out"));
        fetcher.doWork();
        assertEquals(1, queue.failed.size());
        assertTrue(queue.failed.get(s).getMessage().contains("did not deliver it in time: timed out"),
            queue.failed.get(s).getMessage());
    }

    @Test
    void shouldFailAtOnceOnABlockOutsideTheVersion()
    {
        final Slot s = slot(2, 1);
        s.retryUntil = now + 60_000_000_000L;
        queue.fetch.add(s);
        fetcher.doWork();
        blocks.fail(blocks.submitted.getFirst(), new BlockClient.FetchException(Status.NOT_IN_VERSION, "not in m@1"));
        fetcher.doWork();
        assertTrue(queue.failed.get(s).getMessage().contains("not in m@1"));
        assertEquals(0, blocks.resets, "the connection is fine");
        now += 10 * Fetcher.RETRY_PAUSE_NANOS;
        fetcher.doWork();
        assertTrue(queue.retried.isEmpty(), "never retried");
    }

    @Test
    void shouldCancelTheRequestsOfAWrongGuessAndHandItBack()
    {
        final Slot guess = slot(3, 3);
        queue.fetch.add(guess);
        fetcher.doWork();
        assertEquals(List.of(1), blocks.priorities, "a prefetch asks with priority 1");
        queue.cancel.add(guess);
        fetcher.doWork();
        assertEquals(Set.copyOf(blocks.submitted), blocks.cancelled);
        assertEquals(List.of(guess), queue.cancelled);
        assertFalse(fetcher.busy());
        blocks.done.addAll(blocks.submitted); // a late answer of the cancelled request: nothing happens
        fetcher.doWork();
        assertTrue(queue.arrived.isEmpty());
    }

    @Test
    void shouldTellTheQueueHowManyBytesAreInFlight()
    {
        queue.fetch.add(slot(4, 2));
        fetcher.doWork();
        fetcher.doWork();
        assertEquals(List.of(0L, 128L), queue.inflightAsked);
    }

    @Test
    void shouldSendAHintForEveryThousandBlocks()
    {
        queue.hint.add(slot(5, BlockClient.MAX_BLOCKS_PER_REQUEST + 1));
        fetcher.doWork();
        assertEquals(2, fetcher.hintsSent());
        assertNull(queue.nextHint());
    }

    private static final class FakeQueue implements Fetcher.Queue
    {
        final ArrayDeque<Slot> fetch = new ArrayDeque<>();
        final ArrayDeque<Slot> hint = new ArrayDeque<>();
        final ArrayDeque<Slot> cancel = new ArrayDeque<>();
        final List<Long> inflightAsked = new ArrayList<>();
        final List<Slot> arrived = new ArrayList<>();
        final List<Slot> retried = new ArrayList<>();
        final List<Slot> cancelled = new ArrayList<>();
        final Map<Slot, IOException> failed = new HashMap<>();

        @Override
        public Slot nextFetch(final long inflightBytes)
        {
            inflightAsked.add(inflightBytes);
            return fetch.pollFirst();
        }

        @Override
        public Slot nextHint()
        {
            return hint.pollFirst();
        }

        @Override
        public Slot nextCancel()
        {
            return cancel.pollFirst();
        }

        @Override
        public void cancelled(final Slot s)
        {
            cancelled.add(s);
        }

        @Override
        public void arrived(final Slot s)
        {
            arrived.add(s);
        }

        @Override
        public void failed(final Slot s, final IOException cause)
        {
            failed.put(s, cause);
        }

        @Override
        public void retry(final Slot s)
        {
            retried.add(s);
        }
    }

    private static final class FakeBlocks implements Fetcher.Blocks
    {
        final List<Long> submitted = new ArrayList<>();
        final List<Integer> priorities = new ArrayList<>();
        final Set<Long> done = new HashSet<>();
        final Map<Long, IOException> failures = new HashMap<>();
        final Set<Long> cancelled = new HashSet<>();
        int resets;
        private long next = 1;

        void fail(final long id, final IOException ex)
        {
            failures.put(id, ex);
            done.add(id);
        }

        @Override
        public long submitInto(final String version, final List<BlockId> ids, final MemorySegment dest,
            final long[] offsets, final long timeoutNanos, final int priority, final long neededInNanos)
        {
            submitted.add(next);
            priorities.add(priority);
            return next++;
        }

        @Override
        public boolean hint(final String version, final List<BlockId> ids, final long timeoutNanos)
        {
            return true;
        }

        @Override
        public int poll()
        {
            return 0;
        }

        @Override
        public boolean isDone(final long correlationId)
        {
            return done.contains(correlationId) && !cancelled.contains(correlationId);
        }

        @Override
        public void await(final long correlationId) throws IOException
        {
            final IOException f = failures.get(correlationId);
            if (f != null)
            {
                throw f;
            }
        }

        @Override
        public void cancel(final long correlationId)
        {
            cancelled.add(correlationId);
        }

        @Override
        public void reset()
        {
            resets++;
        }

        @Override
        public void close()
        {
        }
    }
}
