package dev.strata.transport.bulk;

import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.YieldingIdleStrategy;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Bulk transfers through a real media driver: exact reassembly, a damaged chunk caught and re-sent, back-pressure. */
class BulkTransferTest
{
    private static final String CHANNEL = "aeron:ipc?mtu=65504";

    @TempDir
    Path dir;

    private Transport transport;
    private Arena arena;

    @BeforeEach
    void start()
    {
        transport = Transport.launch(new TransportContext().aeronDirectory(dir.resolve("aeron").toString()));
        arena = Arena.ofShared();
    }

    @AfterEach
    void stop()
    {
        transport.close();
        arena.close();
    }

    private MemorySegment[] random(final Random random, final long... sizes)
    {
        final MemorySegment[] parts = new MemorySegment[sizes.length];
        for (int i = 0; i < sizes.length; i++)
        {
            parts[i] = arena.allocate(sizes[i]);
            for (long b = 0; b < sizes[i]; b++)
            {
                parts[i].set(ValueLayout.JAVA_BYTE, b, (byte)random.nextInt());
            }
        }
        return parts;
    }

    private MemorySegment[] empty(final MemorySegment[] like)
    {
        final MemorySegment[] parts = new MemorySegment[like.length];
        for (int i = 0; i < like.length; i++)
        {
            parts[i] = arena.allocate(like[i].byteSize());
        }
        return parts;
    }

    /** Polls until {@code done} holds {@code n} transfers. */
    private static void pollUntil(final Subscription sub, final BulkReceiver receiver,
        final List<BulkReceiver.Transfer> done, final int n)
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (done.size() < n)
        {
            if (sub.poll(receiver, 64) == 0)
            {
                Thread.onSpinWait();
            }
            assertTrue(System.nanoTime() < deadline, "timed out: " + done.size() + " of " + n + " transfers done");
        }
    }

    @Test
    void shouldReassembleEveryPartExactlyAndReportWhatArrived() throws Exception
    {
        try (Publication pub = transport.publication(CHANNEL, 7); Subscription sub = transport.subscription(CHANNEL, 7))
        {
            final List<BulkReceiver.Transfer> done = new ArrayList<>();
            final BulkReceiver receiver = new BulkReceiver(done::add);
            final BulkSender sender = new BulkSender(pub, new YieldingIdleStrategy());
            // parts below, at and above one chunk, and one byte
            final int chunk = sender.chunkBytes();
            final MemorySegment[] source = random(new Random(1), 360_448, 1, chunk, chunk + 1, 3L * chunk - 5);
            final MemorySegment[] target = empty(source);
            receiver.expect(42L, 1, target);
            awaitConnected(pub);
            final Thread sending = Thread.ofPlatform().start(() ->
            {
                try
                {
                    sender.send(42L, 1, source, System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> false);
                }
                catch (final TimeoutException e)
                {
                    throw new AssertionError(e);
                }
            });
            pollUntil(sub, receiver, done, 1);
            sending.join();
            final BulkReceiver.Transfer t = done.get(0);
            assertTrue(t.ok(), "transfer ok");
            long total = 0;
            for (int i = 0; i < source.length; i++)
            {
                assertEquals(-1L, source[i].mismatch(target[i]), "part " + i + " identical");
                total += source[i].byteSize();
            }
            assertEquals(total, t.bytes());
            assertEquals(0, receiver.droppedChunks());
        }
    }

    @Test
    void shouldCatchADamagedChunkAndTakeTheResendUnderTheNextAttempt() throws Exception
    {
        try (Publication pub = transport.publication(CHANNEL, 8); Subscription sub = transport.subscription(CHANNEL, 8))
        {
            final List<BulkReceiver.Transfer> done = new ArrayList<>();
            final BulkReceiver receiver = new BulkReceiver(done::add);
            final BulkSender sender = new BulkSender(pub, new YieldingIdleStrategy()).corruptChunks(c -> c == 2);
            final MemorySegment[] source = random(new Random(2), 5L * sender.chunkBytes());
            final MemorySegment[] target = empty(source);
            awaitConnected(pub);
            receiver.expect(9L, 1, target);
            sender.send(9L, 1, source, System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> false);
            pollUntil(sub, receiver, done, 1);
            assertFalse(done.get(0).ok(), "the damaged chunk is caught");
            assertEquals(1, done.get(0).corruptChunks());
            assertTrue(source[0].mismatch(target[0]) >= 0, "the damaged chunk was not written");
            receiver.expect(9L, 2, target);
            sender.send(9L, 2, source, System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> false);
            pollUntil(sub, receiver, done, 2);
            assertTrue(done.get(1).ok());
            assertEquals(-1L, source[0].mismatch(target[0]));
        }
    }

    @Test
    void shouldGiveUpOnBackPressureAtTheDeadlineAndOnCancel() throws Exception
    {
        // a small term: the unpolled subscription fills it and holds the sender back
        final String small = "aeron:ipc?term-length=65536";
        try (Publication pub = transport.publication(small, 9); Subscription sub = transport.subscription(small, 9))
        {
            awaitConnected(pub);
            final BulkSender sender = new BulkSender(pub, new YieldingIdleStrategy());
            final MemorySegment[] source = random(new Random(3), 1 << 20);
            assertThrows(TimeoutException.class, () ->
                sender.send(1L, 1, source, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(200), () -> false));
            final IllegalStateException cancelled = assertThrows(IllegalStateException.class, () ->
                sender.send(2L, 1, source, System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> true));
            assertTrue(cancelled.getMessage().contains("cancelled"), cancelled.getMessage());
            assertTrue(sub.isConnected());
        }
    }

    @Test
    void shouldLeaveTheCoreToComputeWhileBackPressured() throws Exception
    {
        // the receiver never polls: the sender waits out its deadline. With the shared-core wait it must park, not
        // spin or yield: its thread's CPU time stays a small part of the wait (a yielding wait is runnable all along
        // and takes a core's fair share: most of the wait on an idle core)
        final String small = "aeron:ipc?term-length=65536";
        try (Publication pub = transport.publication(small, 10); Subscription sub = transport.subscription(small, 10))
        {
            awaitConnected(pub);
            final BulkSender sender = new BulkSender(pub, BulkSender.sharedCoreIdle());
            final MemorySegment[] source = random(new Random(4), 1 << 20);
            final java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
            final long cpu0 = threads.getCurrentThreadCpuTime();
            final long wall0 = System.nanoTime();
            assertThrows(TimeoutException.class, () ->
                sender.send(1L, 1, source, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(600), () -> false));
            final long wall = System.nanoTime() - wall0;
            final long cpu = threads.getCurrentThreadCpuTime() - cpu0;
            assertTrue(cpu < wall / 5, "a back-pressured sender used " + cpu / 1_000_000 + " ms of CPU in " +
                wall / 1_000_000 + " ms");
            assertTrue(sub.isConnected());
        }
    }

    private static void awaitConnected(final Publication pub) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!pub.isConnected())
        {
            assertTrue(System.nanoTime() < deadline, "publication not connected");
            Thread.sleep(1);
        }
    }
}
