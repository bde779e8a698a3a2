package dev.strata.compute.cluster;

import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.model.ModelConfig;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.bulk.BulkReceiver;
import dev.strata.transport.bulk.BulkSender;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The node agent's {@code KvStream}, between a transfer that sends a prefill's layers as they land and the prefill
 * giving its blocks back (preempted): the release waits for the part being sent, and only for it (the engine thread
 * is the one waiting); after it, nothing is read from the blocks given back, and the parts still to send come from
 * the blocks of the prefill's next run.
 */
class KvStreamTest
{
    private static final ModelConfig CONFIG = new ModelConfig("llama", 64, 3, 4, 2, 16, 96, 100, 512, 1e-5f, 10000f,
        16, ModelConfig.RopeStyle.NORMAL, false, 0, 0);
    private static final String CHANNEL = "aeron:ipc?mtu=65504";

    @TempDir
    Path dir;

    private final long partWait = NodeAgent.PART_WAIT_NANOS;

    @AfterEach
    void restore()
    {
        NodeAgent.PART_WAIT_NANOS = partWait;
    }

    @Test
    void shouldHoldAPreemptedPrefillsReleaseUntilThePartInFlightIsOutAndThenReadOnlyTheNextRunsBlocks()
        throws Exception
    {
        // no part may give up waiting for its receiver while this test holds it back on purpose
        NodeAgent.PART_WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);
        try (Transport transport = Transport.launch(new TransportContext()
                .aeronDirectory(dir.resolve("aeron").toString()));
            KvBlockPool pool = new KvBlockPool(CONFIG, KvBlockPool.KvType.F32, 16, 1L << 20);
            Arena arena = Arena.ofShared())
        {
            final int layers = CONFIG.layers();
            final long layerBytes = pool.blockBytes() / layers;
            final int first = pool.allocate();
            final int again = pool.allocate();
            pool.block(first).fill((byte)0x11);
            pool.block(again).fill((byte)0x22);
            final NodeAgent.KvStream stream = new NodeAgent.KvStream(layers, 16);
            stream.stored(0, 16, new int[]{first});
            stream.stored(1, 16, new int[]{first});

            // the decode node's subscription is not there yet: the first part waits, holding the lock, to connect
            final Publication publication = transport.aeron().addPublication(CHANNEL, 0x7100);
            final BulkSender sender = new BulkSender(publication, new BackoffIdleStrategy());
            final AtomicInteger polls = new AtomicInteger();
            final BooleanSupplier gone = () ->
            {
                polls.incrementAndGet();
                return false;
            };
            final CompletableFuture<Long> sent = CompletableFuture.supplyAsync(() ->
            {
                try
                {
                    return stream.send(sender, pool, 7, 0, TimeUnit.SECONDS.toNanos(60), gone, new AtomicLong());
                }
                catch (final Exception e)
                {
                    throw new IllegalStateException(e);
                }
            });
            awaitTrue(() -> polls.get() > 2, "the first part is being offered");

            // the prefill is preempted: its release must wait for the part in flight
            final Thread release = Thread.ofPlatform().start(stream::released);
            awaitTrue(() -> release.getState() == Thread.State.WAITING || !release.isAlive(),
                "the release reached the lock");
            assertTrue(release.isAlive(), "the release returned while a part of its blocks was being sent");

            final MemorySegment[] parts = new MemorySegment[layers];
            for (int l = 0; l < layers; l++)
            {
                parts[l] = arena.allocate(layerBytes);
            }
            final BulkReceiver receiver = new BulkReceiver(t -> { });
            final BulkReceiver.Transfer transfer = receiver.expect(7, 1, parts);
            try (Subscription subscription = transport.aeron().addSubscription(CHANNEL, 0x7100))
            {
                awaitTrue(() ->
                {
                    subscription.poll(receiver, 16);
                    return !release.isAlive();
                }, "the release went on once the part was out");

                // the prefill runs again into another block; the parts not yet sent must come from it (layer 1 was
                // stored before the release, but the release goes first once the part in flight is out)
                for (int l = 0; l < layers; l++)
                {
                    stream.stored(l, 16, new int[]{again});
                }
                awaitTrue(() ->
                {
                    subscription.poll(receiver, 16);
                    return transfer.done();
                }, "every part arrived");
            }
            assertTrue(transfer.ok(), transfer.error());
            assertEquals(layers * layerBytes, sent.get(30, TimeUnit.SECONDS));
            assertEquals(-1, parts[0].mismatch(pool.block(first).asSlice(0, layerBytes)),
                "layer 0 went before the release, from the first run's block");
            for (int l = 1; l < layers; l++)
            {
                assertEquals(-1, parts[l].mismatch(pool.block(again).asSlice(l * layerBytes, layerBytes)),
                    "layer " + l + " went after the release: from the next run's block, not the one given back");
            }
        }
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean())
        {
            assertTrue(System.nanoTime() < deadline, "timed out: " + what);
            Thread.sleep(1);
        }
    }
}
