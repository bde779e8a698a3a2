package dev.strata.paramserver;

import dev.strata.tiering.BlockId;
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
            TieredBlockStore store = new TieredBlockStore(memory, null, object, 16L << 20, 1);
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
                try (AgentRunner runner = new AgentRunner(new BackoffIdleStrategy(), Throwable::printStackTrace, null,
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
        final TieredBlockStore store;
        final Transport t = Transport.launch(new TransportContext());
        final Subscription serverIn = t.subscription(TransportContext.IPC_CHANNEL, 200);
        final Publication requests = t.publication(TransportContext.IPC_CHANNEL, 200);
        final Subscription responses = t.subscription(TransportContext.IPC_CHANNEL, 301);
        final List<BlockId> ids = new ArrayList<>();
        final BlockServer server;

        HandDriven(final int blocks) throws Exception
        {
            object = new DirectoryObjectTier(dir.resolve("object"));
            store = new TieredBlockStore(memory, null, object, 16L << 20, 1);
            final Random random = new Random(7);
            for (int i = 0; i < blocks; i++)
            {
                final byte[] b = new byte[BlockServer.CHUNK_BYTES * 4];
                random.nextBytes(b);
                ids.add(store.put(MemorySegment.ofArray(b)));
                store.acquire(ids.getLast()).close(); // warm
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
        final io.aeron.logbuffer.FragmentHandler record = (buffer, offset, length, h) ->
            order.add(chunk.wrapAndApplyHeader(buffer, offset, header).correlationId());
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
            h.server.doWork();
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
        final org.agrona.concurrent.UnsafeBuffer buffer = new org.agrona.concurrent.UnsafeBuffer(new byte[4096]);
        final dev.strata.transport.sbe.BlockRequestEncoder request = new dev.strata.transport.sbe.BlockRequestEncoder();
        request.wrapAndApplyHeader(buffer, 0, new dev.strata.transport.sbe.MessageHeaderEncoder())
            .correlationId(correlationId).timeoutNanos(TIMEOUT).priority((short)priority)
            .responseStreamId(responseStream).neededInNanos(neededInNanos);
        final dev.strata.transport.sbe.BlockRequestEncoder.BlocksEncoder group = request.blocksCount(ids.size());
        for (final BlockId id : ids)
        {
            group.next().putDigest(id.sha256(), 0, BlockId.DIGEST_BYTES).contentLength(id.length());
        }
        request.modelVersion("m@1");
        request.responseChannel(TransportContext.IPC_CHANNEL);
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
