package dev.strata.paramserver;

import dev.strata.paramclient.BlockClient;

import dev.strata.transport.BlockId;
import dev.strata.tiering.DirectoryObjectTier;
import dev.strata.tiering.EvictionPolicy;
import dev.strata.tiering.MemoryTier;
import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.Status;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.net.DatagramSocket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Blocks pulled over a real Aeron media driver, IPC and UDP loopback, arrive byte-identical. */
class BlockServingTest
{
    private static final long TIMEOUT = TimeUnit.SECONDS.toNanos(20);

    @TempDir
    Path dir;

    @Test
    void shouldServeBlocksByteIdenticalOverIpc() throws Exception
    {
        serveAndFetch(TransportContext.IPC_CHANNEL, TransportContext.IPC_CHANNEL);
    }

    @Test
    void shouldServeBlocksByteIdenticalOverUdpLoopback() throws Exception
    {
        serveAndFetch(TransportContext.udpChannel("localhost", freePort()),
            TransportContext.udpChannel("localhost", freePort()));
    }

    @Test
    void shouldTimeOutClearlyWithoutServer() throws Exception
    {
        try (Transport t = Transport.launch(new TransportContext());
            Publication requests = t.publication(TransportContext.IPC_CHANNEL, 300);
            Subscription responses = t.subscription(TransportContext.IPC_CHANNEL, 301))
        {
            final BlockClient client = new BlockClient(requests, responses);
            final BlockClient.FetchException ex = assertThrows(BlockClient.FetchException.class,
                () -> client.fetch("m@1", List.of(BlockId.of(new byte[]{1})), TimeUnit.MILLISECONDS.toNanos(300)));
            assertTrue(ex.getMessage().contains("no block server connected") || ex.getMessage().contains("timed out"),
                ex.getMessage());
        }
    }

    private void serveAndFetch(final String requestChannel, final String responseChannel) throws Exception
    {
        final Random random = new Random(3);
        try (MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
            DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("object"));
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                .memory(memory).object(object).maxBlockBytes(16L << 20).prefetchThreads(1));
            Transport t = Transport.launch(new TransportContext()))
        {
            final List<BlockId> ids = new ArrayList<>();
            final List<byte[]> contents = new ArrayList<>();
            for (final int size : new int[]{1, 1000, BlockServer.CHUNK_BYTES, BlockServer.CHUNK_BYTES + 1, (4 << 20) + 17})
            {
                final byte[] b = new byte[size];
                random.nextBytes(b);
                contents.add(b);
                ids.add(store.put(MemorySegment.ofArray(b)));
            }
            final BlockId unknown = BlockId.of(new byte[]{9, 9, 9});
            final BlockId stranger = store.put(MemorySegment.ofArray(new byte[]{7, 7})); // stored, not in model@1
            final java.util.Set<BlockId> version = new java.util.HashSet<>(ids);
            version.add(unknown);
            try (Subscription serverIn = t.subscription(requestChannel, 200);
                Publication clientOut = t.publication(requestChannel, 200);
                Subscription clientIn = t.subscription(responseChannel, 201))
            {
                final BlockServer server = new BlockServer(store, serverIn, t.aeron(),
                    v -> v.equals("model@1") ? version : null);
                try (AgentRunner runner = new AgentRunner(new BackoffIdleStrategy(), server::onAgentError, null,
                    server))
                {
                    AgentRunner.startOnThread(runner);
                    final long connectDeadline = System.nanoTime() + TIMEOUT;
                    while (!clientOut.isConnected())
                    {
                        assertTrue(System.nanoTime() < connectDeadline, "channels did not connect");
                        Thread.onSpinWait();
                    }
                    final BlockClient client = new BlockClient(clientOut, clientIn);
                    final List<MemorySegment> got = client.fetch("model@1", ids, TIMEOUT);
                    for (int i = 0; i < ids.size(); i++)
                    {
                        assertEquals(-1, got.get(i).mismatch(MemorySegment.ofArray(contents.get(i))), "block " + i);
                    }

                    // an unknown block fails that request with a status; the server keeps serving
                    final BlockClient.FetchException ex = assertThrows(BlockClient.FetchException.class,
                        () -> client.fetch("model@1", List.of(ids.get(1), unknown), TIMEOUT));
                    assertEquals(Status.UNKNOWN_BLOCK, ex.status());
                    assertEquals(Status.NOT_IN_VERSION, assertThrows(BlockClient.FetchException.class,
                        () -> client.fetch("model@1", List.of(stranger), TIMEOUT)).status(),
                        "a stored block outside the pinned version's manifest is refused");
                    assertEquals(Status.UNKNOWN_VERSION, assertThrows(BlockClient.FetchException.class,
                        () -> client.fetch("model@2", List.of(ids.get(0)), TIMEOUT)).status());

                    // a malformed message is dropped; the server keeps serving
                    final org.agrona.concurrent.UnsafeBuffer junk = new org.agrona.concurrent.UnsafeBuffer(new byte[64]);
                    junk.setMemory(0, 64, (byte)0x5a);
                    junk.putShort(4, (short)dev.strata.transport.sbe.BlockRequestDecoder.SCHEMA_ID,
                        java.nio.ByteOrder.LITTLE_ENDIAN);
                    junk.putShort(2, (short)1, java.nio.ByteOrder.LITTLE_ENDIAN);
                    while (clientOut.offer(junk, 0, 64) < 0)
                    {
                        Thread.onSpinWait();
                    }
                    final List<MemorySegment> again = client.fetch("model@1", List.of(ids.get(4)), TIMEOUT);
                    assertEquals(-1, again.get(0).mismatch(MemorySegment.ofArray(contents.get(4))));
                    assertTrue(server.served() >= ids.size() + 2);

                    // a byte of the memory tier's copy flipped after the block was first served: the checksums the
                    // server kept from that send no longer match, and the client refuses the chunk
                    try (TieredBlockStore.Pinned pinned = store.acquire(ids.get(4)))
                    {
                        // the tier hands out read-only views: a raw view of the same memory stands for a bit flip
                        final MemorySegment bytes = MemorySegment.ofAddress(pinned.bytes().address())
                            .reinterpret(pinned.bytes().byteSize());
                        final long at = 3L * BlockServer.CHUNK_BYTES + 5;
                        bytes.set(java.lang.foreign.ValueLayout.JAVA_BYTE, at,
                            (byte)(bytes.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at) ^ 1));
                        final BlockClient.FetchException corrupt = assertThrows(BlockClient.FetchException.class,
                            () -> client.fetch("model@1", List.of(ids.get(4)), TIMEOUT));
                        assertEquals(Status.CORRUPT, corrupt.status());
                        assertTrue(corrupt.getMessage().contains("checksum"), corrupt.getMessage());
                        bytes.set(java.lang.foreign.ValueLayout.JAVA_BYTE, at,
                            (byte)(bytes.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at) ^ 1));
                    }
                    assertEquals(-1, client.fetch("model@1", List.of(ids.get(4)), TIMEOUT).get(0)
                        .mismatch(MemorySegment.ofArray(contents.get(4))), "served whole once repaired");
                }
            }
        }
    }

    /**
     * A block server driven by hand, one duty cycle at a time, so that the order of chunks is the server's choice
     * alone: a store holding {@code blocks} warm blocks of four chunks each (version {@code m@1}), and an IPC
     * request channel with a response stream 301.
     */
    private final class HandDriven implements AutoCloseable
    {
        final MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
        final DirectoryObjectTier object;
        final GatedTier gated;
        final TieredBlockStore store;
        final Transport t = Transport.launch(new TransportContext());
        final Subscription serverIn = t.subscription(TransportContext.IPC_CHANNEL, 200);
        final Publication requests = t.publication(TransportContext.IPC_CHANNEL, 200);
        final Subscription responses = t.subscription(TransportContext.IPC_CHANNEL, 301);
        final List<BlockId> ids = new ArrayList<>();
        final BlockServer server;

        HandDriven(final int blocks) throws Exception
        {
            this(blocks, 0);
        }

        /** {@code warm} blocks in the memory tier, then {@code cold} ones in the (gated) object tier only. */
        HandDriven(final int warm, final int cold) throws Exception
        {
            object = new DirectoryObjectTier(dir.resolve("object"));
            gated = new GatedTier(object);
            store = TieredBlockStore.open(new TieredBlockStore.Context()
                .memory(memory).object(gated).maxBlockBytes(16L << 20).prefetchThreads(1));
            final Random random = new Random(7);
            for (int i = 0; i < warm + cold; i++)
            {
                final byte[] b = new byte[BlockServer.CHUNK_BYTES * 4];
                random.nextBytes(b);
                ids.add(store.put(MemorySegment.ofArray(b)));
                if (i < warm)
                {
                    store.acquire(ids.getLast()).close(); // warm
                }
            }
            final java.util.Set<BlockId> version = java.util.Set.copyOf(ids);
            server = new BlockServer(store, serverIn, t.aeron(), v -> version);
        }

        @Override
        public void close() throws Exception
        {
            responses.close();
            requests.close();
            serverIn.close();
            t.close();
            store.close();
            object.close();
            memory.close();
        }
    }

    /** An object tier whose reads wait, while the gate is shut, until it opens (or 5 s pass). */
    private static final class GatedTier implements dev.strata.tiering.Tier
    {
        final dev.strata.tiering.Tier inner;
        final java.util.concurrent.CountDownLatch open = new java.util.concurrent.CountDownLatch(1);
        final java.util.concurrent.CountDownLatch entered = new java.util.concurrent.CountDownLatch(1);
        volatile boolean shut;
        /** Whether a read that waited at the shut gate has returned. */
        volatile boolean returned;

        GatedTier(final dev.strata.tiering.Tier inner)
        {
            this.inner = inner;
        }

        @Override
        public String name()
        {
            return inner.name();
        }

        @Override
        public MemorySegment get(final BlockId id) throws java.io.IOException
        {
            if (shut)
            {
                entered.countDown();
                try
                {
                    open.await(5, TimeUnit.SECONDS);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
                returned = true;
            }
            return inner.get(id);
        }

        @Override
        public boolean put(final BlockId id, final MemorySegment bytes) throws java.io.IOException
        {
            return inner.put(id, bytes);
        }

        @Override
        public boolean delete(final BlockId id) throws java.io.IOException
        {
            return inner.delete(id);
        }

        @Override
        public boolean contains(final BlockId id) throws java.io.IOException
        {
            return inner.contains(id);
        }

        @Override
        public java.util.Set<BlockId> ids() throws java.io.IOException
        {
            return inner.ids();
        }

        @Override
        public long usedBytes()
        {
            return inner.usedBytes();
        }

        @Override
        public void close()
        {
        }
    }

    @Test
    @org.junit.jupiter.api.Timeout(60)
    void shouldServeWarmBlocksWhileAnotherClientsColdBlockIsRead() throws Exception
    {
        try (HandDriven h = new HandDriven(2, 1);
            Subscription coldResponses = h.t.subscription(TransportContext.IPC_CHANNEL, 302))
        {
            h.gated.shut = true; // the cold block's read from the object tier now waits for the test
            send(h.requests, 1, 0, 302, h.ids.subList(2, 3)); // client A: a cold block, asked first
            send(h.requests, 2, 0, 301, h.ids.subList(0, 2)); // client B: two warm blocks, asked second
            assertEquals(List.of(2L, 2L, 2L, 2L, 2L, 2L, 2L, 2L), chunkOrder(h.server, h.responses, 8),
                "the warm blocks are served while the cold one is being read");
            assertTrue(h.gated.entered.await(20, TimeUnit.SECONDS), "the cold read had started meanwhile");
            assertTrue(!h.gated.returned, "the warm blocks did not wait for the cold read to finish");
            assertEquals(1, h.server.coldReads());
            h.gated.open.countDown();
            assertEquals(List.of(1L, 1L, 1L, 1L), chunkOrder(h.server, coldResponses, 4),
                "the cold block follows once read");
            assertEquals(3, h.server.served());
            assertEquals(0, h.server.errors());
        }
    }

    @Test
    void shouldServeDemandBeforeAnEarlierPrefetch() throws Exception
    {
        try (HandDriven h = new HandDriven(3))
        {
            send(h.requests, 1, 1, 301, h.ids.subList(0, 2)); // prefetch of 8 chunks, first
            send(h.requests, 2, 0, 301, h.ids.subList(2, 3)); // demand of 4 chunks, second, answered on the same
                                                              // stream: the stream's order is the server's order
            assertEquals(List.of(2L, 2L, 2L, 2L, 1L, 1L, 1L, 1L, 1L, 1L, 1L, 1L), chunkOrder(h.server, h.responses, 12),
                "every demand chunk before any prefetch chunk");
        }
    }

    /** Requests whose chunks arrive, in the order they arrive, driving the server by hand, until {@code chunks}. */
    private static List<Long> chunkOrder(final BlockServer server, final Subscription responses, final int chunks)
    {
        final long deadline = System.nanoTime() + TIMEOUT;
        final List<Long> order = new ArrayList<>();
        final dev.strata.transport.sbe.MessageHeaderDecoder header = new dev.strata.transport.sbe.MessageHeaderDecoder();
        final dev.strata.transport.sbe.BlockChunkDecoder chunk = new dev.strata.transport.sbe.BlockChunkDecoder();
        // payload chunks are bulk frames (transfer id = correlation id), errors SBE BlockChunks
        final io.aeron.logbuffer.FragmentHandler record = (buffer, offset, length, h) ->
            order.add(buffer.getInt(offset, java.nio.ByteOrder.LITTLE_ENDIAN) == dev.strata.transport.bulk.BulkFrame.MAGIC ?
                buffer.getLong(offset + dev.strata.transport.bulk.BulkFrame.TRANSFER_ID_OFFSET,
                    java.nio.ByteOrder.LITTLE_ENDIAN) :
                chunk.wrapAndApplyHeader(buffer, offset, header).correlationId());
        final io.aeron.FragmentAssembler assembler = new io.aeron.FragmentAssembler(record);
        while (order.size() < chunks)
        {
            assertTrue(System.nanoTime() < deadline, "only " + order.size() + " chunks arrived");
            server.doWork();
            responses.poll(assembler, 1000);
        }
        // a few more duty cycles: nothing beyond what was expected may come
        for (int i = 0; i < 20; i++)
        {
            server.doWork();
            responses.poll(assembler, 1000);
        }
        return order;
    }

    @Test
    void shouldServePrefetchesEarliestNeededFirst() throws Exception
    {
        try (HandDriven h = new HandDriven(4))
        {
            final long ms = 1_000_000L;
            send(h.requests, 1, 1, 5_000 * ms, 301, h.ids.subList(0, 1)); // needed in 5 s
            send(h.requests, 2, 1, -1, 301, h.ids.subList(1, 2));        // no time given: last
            send(h.requests, 3, 1, 2 * ms, 301, h.ids.subList(2, 3));    // needed in 2 ms
            send(h.requests, 4, 1, 2 * ms, 301, h.ids.subList(3, 4));    // as soon, sent later
            assertEquals(List.of(3L, 3L, 3L, 3L, 4L, 4L, 4L, 4L, 1L, 1L, 1L, 1L, 2L, 2L, 2L, 2L),
                chunkOrder(h.server, h.responses, 16), "earliest needed first, then first come first served");
        }
    }

    @Test
    void shouldDropTheRestOfACancelledRequestAndServeTheOthers() throws Exception
    {
        try (HandDriven h = new HandDriven(3);
            Subscription otherResponses = h.t.subscription(TransportContext.IPC_CHANNEL, 302))
        {
            send(h.requests, 1, 1, 301, h.ids.subList(0, 1));
            send(h.requests, 2, 1, 301, h.ids.subList(1, 3));
            send(h.requests, 2, 1, 302, h.ids.subList(1, 2)); // another client, the same correlation id
            cancel(h.requests, 2, 301);
            cancel(h.requests, 99, 301); // nothing of that id: no harm
            assertEquals(List.of(1L, 1L, 1L, 1L), chunkOrder(h.server, h.responses, 4),
                "nothing of the cancelled request");
            assertEquals(List.of(2L, 2L, 2L, 2L), chunkOrder(h.server, otherResponses, 4),
                "a cancel names its client: another client's request of the same id is served whole");
            assertEquals(1, h.server.cancelled());
        }
    }

    @Test
    void shouldForgetACancelledRequestAndKeepFetching() throws Exception
    {
        try (HandDriven h = new HandDriven(6))
        {
            final BlockClient client = new BlockClient(h.requests, h.responses);
            // 20 chunks: one duty cycle sends 16 of them, so the cancel finds the request half sent
            final long unwanted = client.submit("m@1", h.ids.subList(0, 5), TIMEOUT, 1);
            // duty cycles until the request has arrived (the IPC image may take a moment); the cycle that takes
            // it sends 16 chunks
            final long arrival = System.nanoTime() + TIMEOUT;
            while (h.server.served() == 0)
            {
                assertTrue(System.nanoTime() < arrival, "the request did not arrive");
                h.server.doWork();
            }
            assertTrue(client.cancel(unwanted));
            assertTrue(!client.cancel(unwanted), "cancelled once only");
            assertThrows(IllegalArgumentException.class, () -> client.await(unwanted));
            final long wanted = client.submit("m@1", h.ids.subList(5, 6), TIMEOUT, 0);
            final long deadline = System.nanoTime() + TIMEOUT;
            while (!client.isDone(wanted))
            {
                assertTrue(System.nanoTime() < deadline, "the next request was not served");
                h.server.doWork();
                client.poll();
            }
            final List<MemorySegment> got = client.await(wanted);
            assertTrue(h.ids.get(5).matches(got.get(0)), "the next request arrives whole, after 16 chunks of the " +
                "cancelled one");
            assertEquals(1, h.server.cancelled());
            assertEquals(4 + 1, h.server.served(), "four blocks of the cancelled request, then the next one");
        }
    }

    /**
     * Direct placement: a client whose destination is a shared region gets the blocks copied straight into it (no
     * chunk over the channel, only checksums), byte-identical; a placement that names no region of this host, that
     * is not a region name, or that reaches past the region's end is refused with {@code BAD_REQUEST}.
     */
    @Test
    void shouldPlaceBlocksStraightIntoTheClientsSharedRegionAndRefuseBadPlacements() throws Exception
    {
        org.junit.jupiter.api.Assumptions.assumeTrue(dev.strata.transport.bulk.SharedRegion.roomFor(64L << 20),
            "no shared-memory directory with room on this host");
        try (HandDriven h = new HandDriven(3))
        {
            final long len = h.ids.get(0).length();
            try (dev.strata.transport.bulk.SharedRegion region =
                dev.strata.transport.bulk.SharedRegion.create(3 * len + 100))
            {
                final BlockClient client = new BlockClient(h.requests, h.responses).directPlacement(true);
                final long id = client.submitInto("m@1", h.ids, region.segment(),
                    new long[]{100, 100 + len, 100 + 2 * len}, TIMEOUT, 0);
                final long deadline = System.nanoTime() + TIMEOUT;
                while (!client.isDone(id))
                {
                    assertTrue(System.nanoTime() < deadline, "the placed request did not complete");
                    h.server.doWork();
                    client.poll();
                }
                final List<MemorySegment> got = client.await(id);
                for (int i = 0; i < 3; i++)
                {
                    assertTrue(h.ids.get(i).matches(got.get(i)), "block " + i + " placed whole");
                    assertEquals(region.segment().address() + 100 + i * len, got.get(i).address());
                }
                assertEquals(3 * len, h.server.placedBytes(), "every byte placed, none sent as chunks");

                send(h.requests, 77, 0, -1, 301, h.ids.subList(0, 1), "strata-region-1-0123456789abcdef",
                    new long[]{0});
                send(h.requests, 78, 0, -1, 301, h.ids.subList(0, 1), "../../etc/passwd", new long[]{0});
                send(h.requests, 79, 0, -1, 301, h.ids.subList(0, 1), region.name(), new long[]{3 * len});
                final java.util.Map<Long, Status> statuses = new java.util.HashMap<>();
                final java.util.Set<Long> ended = new java.util.HashSet<>();
                final dev.strata.transport.sbe.MessageHeaderDecoder header =
                    new dev.strata.transport.sbe.MessageHeaderDecoder();
                final dev.strata.transport.sbe.BlockChunkDecoder chunk = new dev.strata.transport.sbe.BlockChunkDecoder();
                while (statuses.size() < 3)
                {
                    assertTrue(System.nanoTime() < deadline, "answers: " + statuses);
                    h.server.doWork();
                    h.responses.poll((buffer, offset, length, hd) ->
                    {
                        if (buffer.getInt(offset, java.nio.ByteOrder.LITTLE_ENDIAN) !=
                            dev.strata.transport.bulk.BulkFrame.MAGIC)
                        {
                            chunk.wrapAndApplyHeader(buffer, offset, header);
                            if (chunk.blockIndex() == 0xFFFF)
                            {
                                ended.add(chunk.correlationId()); // the server let go of a placed request
                            }
                            else
                            {
                                statuses.put(chunk.correlationId(), chunk.status());
                            }
                        }
                    }, 100);
                }
                while (!ended.contains(79L))
                {
                    assertTrue(System.nanoTime() < deadline, "no end notice for the refused placement");
                    h.server.doWork();
                    h.responses.poll((buffer, offset, length, hd) ->
                    {
                        chunk.wrapAndApplyHeader(buffer, offset, header);
                        if (chunk.blockIndex() == 0xFFFF)
                        {
                            ended.add(chunk.correlationId());
                        }
                    }, 100);
                }
                assertEquals(java.util.Map.of(77L, Status.BAD_REQUEST, 78L, Status.BAD_REQUEST, 79L,
                    Status.BAD_REQUEST), statuses);
                assertEquals(3 * len, h.server.placedBytes(), "nothing placed for the refused requests");
                assertEquals(1, h.server.mappedRegions());
            }
            // the client closed (deleted) its region: the server unmaps it within about a second
            final long deadline = System.nanoTime() + TIMEOUT;
            while (h.server.mappedRegions() > 0)
            {
                assertTrue(System.nanoTime() < deadline, "the deleted region stayed mapped");
                h.server.doWork();
                Thread.sleep(10);
            }
        }
    }

    /**
     * The fence of direct placement: once {@code cancel} of a placed request returns, the server writes nothing more
     * into the destination (it confirms it dropped the request, or the request completed), so the caller may reuse
     * it; the next placed request into the same memory arrives whole.
     */
    @Test
    void shouldWriteNothingIntoAPlacedDestinationOnceItsCancelReturns() throws Exception
    {
        org.junit.jupiter.api.Assumptions.assumeTrue(dev.strata.transport.bulk.SharedRegion.roomFor(64L << 20),
            "no shared-memory directory with room on this host");
        try (HandDriven h = new HandDriven(3);
            AgentRunner runner = new AgentRunner(h.server.idleStrategy(), h.server::onAgentError, null, h.server))
        {
            AgentRunner.startOnThread(runner);
            final long len = h.ids.get(0).length();
            // 30 placements of the 3 blocks: 120 chunks, several duty cycles, so a cancel lands part way
            final List<BlockId> many = new ArrayList<>();
            final long[] at = new long[30];
            for (int i = 0; i < 30; i++)
            {
                many.add(h.ids.get(i % 3));
                at[i] = i * len;
            }
            try (dev.strata.transport.bulk.SharedRegion region =
                dev.strata.transport.bulk.SharedRegion.create(30 * len))
            {
                final BlockClient client = new BlockClient(h.requests, h.responses).directPlacement(true);
                int cutShort = 0;
                for (int round = 0; round < 10; round++)
                {
                    region.segment().fill((byte)0);
                    final long placedBefore = h.server.placedBytes();
                    final long id = client.submitInto("m@1", many, region.segment(), at, TIMEOUT, 1);
                    final long deadline = System.nanoTime() + TIMEOUT;
                    while (h.server.placedBytes() == placedBefore)
                    {
                        assertTrue(System.nanoTime() < deadline, "nothing placed");
                        client.poll();
                    }
                    assertTrue(client.cancel(id));
                    final long before = crc(region.segment());
                    Thread.sleep(20);
                    assertEquals(before, crc(region.segment()), "round " + round + ": written after the fence");
                    cutShort += h.server.placedBytes() - placedBefore < 30 * len ? 1 : 0;
                }
                assertTrue(cutShort > 0, "some cancel landed part way");
                // the memory is reused at once by the next request, which arrives whole
                final List<MemorySegment> got = client.await(client.submitInto("m@1", many, region.segment(), at,
                    TIMEOUT, 0));
                for (int i = 0; i < 30; i++)
                {
                    assertTrue(many.get(i).matches(got.get(i)), "block " + i);
                }
            }
        }
    }

    private static long crc(final MemorySegment s)
    {
        final java.util.zip.CRC32C c = new java.util.zip.CRC32C();
        c.update(s.asByteBuffer());
        return c.getValue();
    }

    private static void cancel(final Publication requests, final long correlationId, final int responseStream)
    {
        final org.agrona.concurrent.UnsafeBuffer buffer = new org.agrona.concurrent.UnsafeBuffer(new byte[512]);
        final dev.strata.transport.sbe.CancelRequestEncoder cancel = new dev.strata.transport.sbe.CancelRequestEncoder();
        cancel.wrapAndApplyHeader(buffer, 0, new dev.strata.transport.sbe.MessageHeaderEncoder())
            .correlationId(correlationId).responseStreamId(responseStream);
        cancel.responseChannel(TransportContext.IPC_CHANNEL);
        cancel.token("");
        final int length = dev.strata.transport.sbe.MessageHeaderEncoder.ENCODED_LENGTH + cancel.encodedLength();
        final long deadline = System.nanoTime() + TIMEOUT;
        while (requests.offer(buffer, 0, length) < 0)
        {
            assertTrue(System.nanoTime() < deadline, "cancel not sent");
            Thread.onSpinWait();
        }
    }

    private static void send(final Publication requests, final long correlationId, final int priority,
        final int responseStream, final List<BlockId> ids)
    {
        send(requests, correlationId, priority, -1, responseStream, ids);
    }

    private static void send(final Publication requests, final long correlationId, final int priority,
        final long neededInNanos, final int responseStream, final List<BlockId> ids)
    {
        send(requests, correlationId, priority, neededInNanos, responseStream, ids, "", null);
    }

    private static void send(final Publication requests, final long correlationId, final int priority,
        final long neededInNanos, final int responseStream, final List<BlockId> ids, final String placement,
        final long[] placeAt)
    {
        final org.agrona.concurrent.UnsafeBuffer buffer = new org.agrona.concurrent.UnsafeBuffer(new byte[4096]);
        final dev.strata.transport.sbe.BlockRequestEncoder request = new dev.strata.transport.sbe.BlockRequestEncoder();
        request.wrapAndApplyHeader(buffer, 0, new dev.strata.transport.sbe.MessageHeaderEncoder())
            .correlationId(correlationId).timeoutNanos(TIMEOUT).priority((short)priority)
            .responseStreamId(responseStream).neededInNanos(neededInNanos);
        final dev.strata.transport.sbe.BlockRequestEncoder.BlocksEncoder group = request.blocksCount(ids.size());
        for (int i = 0; i < ids.size(); i++)
        {
            group.next().putDigest(ids.get(i).sha256(), 0, BlockId.DIGEST_BYTES).contentLength(ids.get(i).length())
                .placeAt(placeAt == null ? -1 : placeAt[i]);
        }
        request.modelVersion("m@1");
        request.responseChannel(TransportContext.IPC_CHANNEL);
        request.token("");
        request.placement(placement);
        final int length = dev.strata.transport.sbe.MessageHeaderEncoder.ENCODED_LENGTH + request.encodedLength();
        final long deadline = System.nanoTime() + TIMEOUT;
        while (requests.offer(buffer, 0, length) < 0)
        {
            assertTrue(System.nanoTime() < deadline, "request not sent");
            Thread.onSpinWait();
        }
    }

    private static int freePort() throws Exception
    {
        try (DatagramSocket s = new DatagramSocket(0))
        {
            return s.getLocalPort();
        }
    }
}
