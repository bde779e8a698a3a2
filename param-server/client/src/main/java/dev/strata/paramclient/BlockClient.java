package dev.strata.paramclient;

import dev.strata.transport.BlockId;
import dev.strata.transport.bulk.BulkFrame;
import dev.strata.transport.bulk.BulkReceiver;
import dev.strata.transport.bulk.SharedRegion;
import dev.strata.transport.sbe.BlockChunkDecoder;
import dev.strata.transport.sbe.BlockRequestEncoder;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.Status;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Fetches blocks from the parameter service's block server: one request per call, chunks reassembled per block, each chunk's
 * CRC32C and each block's SHA-256 checked, a bounded wait. Not thread-safe: one fetch at a time per client.
 */
public final class BlockClient
{
    /** A fetch that failed: the status says whether retrying can help. */
    public static final class FetchException extends IOException
    {
        private final Status status;

        public FetchException(final Status status, final String message)
        {
            super(message);
            this.status = status;
        }

        /** {@code null} for a timeout. */
        public Status status()
        {
            return status;
        }
    }

    private final Publication requests;
    private final Subscription responses;
    private final String responseChannel;
    private final int responseStreamId;
    private final boolean ipc;
    /** The block index of the server's notice that it ended a placed request. */
    private static final int PLACEMENT_ENDED = 0xFFFF;
    /** How long a fence waits for that notice. */
    private static final long FENCE_NANOS = 1_000_000_000L;
    /** Ended notices of requests no longer in flight (their cancel is waiting, or gave up). */
    private final org.agrona.collections.LongHashSet placementEnded = new org.agrona.collections.LongHashSet();
    private boolean placement;
    /**
     * Response channels: the server publishes to the channel the client names, so these parameters set both ends.
     * Large frames (a chunk per frame, no reassembly), and on UDP socket buffers and a receiver window of 4 MiB (the
     * loopback's {@code rmem_max} here) so a 4 MiB block is not throttled by flow control. IPC terms of 16 MiB
     * instead of Aeron's 64: a log of 48 MiB per client rather than 192, with a window (half a term) that still holds
     * two 4 MiB blocks; measured against 8 and 64 MiB terms in the closing note of issue 17
     * ({@code strata.block.ipcTermLength} compares them).
     */
    static final String IPC_RESPONSE_CHANNEL = "aeron:ipc?mtu=65504|term-length=" +
        System.getProperty("strata.block.ipcTermLength", "16m");
    static final String UDP_RESPONSE_PARAMS = "mtu=65504|so-rcvbuf=4m|so-sndbuf=4m|rcv-wnd=4m";

    /** Blocks per request at most (the request must fit one Aeron message). */
    public static final int MAX_BLOCKS_PER_REQUEST = 1000;

    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final BlockRequestEncoder requestEncoder = new BlockRequestEncoder();
    private final dev.strata.transport.sbe.CancelRequestEncoder cancelEncoder =
        new dev.strata.transport.sbe.CancelRequestEncoder();
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final BlockChunkDecoder chunkDecoder = new BlockChunkDecoder();
    private final UnsafeBuffer out = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
    private long nextCorrelationId = new java.security.SecureRandom().nextLong() & 0x7fff_ffff_0000_0000L;

    /** One request in flight: its bulk transfer (one part per block) and how it ended. */
    private static final class Inflight
    {
        final long correlationId;
        final List<BlockId> ids;
        final MemorySegment[] parts;    // where each block lands: a slice of the caller's memory, or an array
        final long deadline;
        /** Direct placement: the server copies into {@code parts} itself and announces each chunk. */
        final boolean placed;
        long placedBytes;
        final long expectedBytes;
        /** The server said it will write no more into this request's destination. */
        boolean ended;
        boolean complete;
        FetchException failure;

        Inflight(final long correlationId, final List<BlockId> ids, final long deadline, final MemorySegment dest,
            final long[] offsets, final boolean placed)
        {
            this.correlationId = correlationId;
            this.ids = ids;
            this.deadline = deadline;
            this.placed = placed;
            this.parts = new MemorySegment[ids.size()];
            long total = 0;
            for (final BlockId id : ids)
            {
                total += id.length();
            }
            this.expectedBytes = total;
            for (int i = 0; i < parts.length; i++)
            {
                final long length = ids.get(i).length();
                parts[i] = dest != null ? dest.asSlice(offsets[i], length) :
                    MemorySegment.ofArray(new byte[Math.toIntExact(length)]);
            }
        }

        int count()
        {
            return ids.size();
        }
    }

    private final org.agrona.collections.Long2ObjectHashMap<Inflight> inflight =
        new org.agrona.collections.Long2ObjectHashMap<>();
    private final FragmentAssembler assembler = new FragmentAssembler(this::onFragment);
    /** Reassembles the payload chunks (bulk frames) straight into each request's parts. */
    private final BulkReceiver receiver = new BulkReceiver(this::onTransferDone);
    private boolean verifyDigests = true;
    private String token = "";

    /**
     * @param requests  publication to the server's request channel.
     * @param responses this client's own subscription; the server answers on its channel and stream.
     */
    public BlockClient(final Publication requests, final Subscription responses)
    {
        this(requests, responses, responses.channel());
    }

    private BlockClient(final Publication requests, final Subscription responses, final String responseChannel)
    {
        this.requests = requests;
        this.responses = responses;
        this.responseChannel = responseChannel;
        this.responseStreamId = responses.streamId();
        this.ipc = responseChannel.startsWith("aeron:ipc");
    }

    /**
     * Whether a destination in a {@link SharedRegion} of this process takes direct placement when the server shares
     * the host (IPC): the server copies the blocks straight into it and sends only the chunks' checksums, one copy
     * instead of two. A placed request that is cancelled, times out or fails may still be written by the server
     * for a moment, so {@link #cancel} and {@link #await} wait (at most a second) for the server's notice that it
     * let the request go before they return: then the destination may be reused. Off by default; compute nodes
     * turn it on over IPC.
     */
    public BlockClient directPlacement(final boolean on)
    {
        this.placement = on;
        return this;
    }

    /**
     * Connects to a block server: over IPC when {@code requestChannel} is {@code aeron:ipc} (the transport must
     * share the server's media driver), else over UDP with this client listening on a free port of
     * {@code localHost}. Waits up to {@code timeoutNanos} for the request channel to connect.
     */
    public static BlockClient connect(final io.aeron.Aeron aeron, final String requestChannel, final int streamId,
        final String localHost, final long timeoutNanos) throws FetchException
    {
        final boolean ipc = requestChannel.startsWith("aeron:ipc");
        final int responseStream = ipc ? 0x4000_0000 | new java.security.SecureRandom().nextInt(0x3fff_ffff) : streamId + 1;
        final Subscription responses = aeron.addSubscription(ipc ? IPC_RESPONSE_CHANNEL :
            "aeron:udp?endpoint=" + localHost + ":0|" + UDP_RESPONSE_PARAMS, responseStream);
        final Publication requests = aeron.addPublication(requestChannel, streamId);
        final long deadline = System.nanoTime() + timeoutNanos;
        String channel = ipc ? IPC_RESPONSE_CHANNEL : null;
        while (channel == null || !requests.isConnected())
        {
            if (channel == null)
            {
                channel = responses.tryResolveChannelEndpointPort();
            }
            if (System.nanoTime() > deadline)
            {
                requests.close();
                responses.close();
                throw new FetchException(null, "no block server answered on " + requestChannel + " stream " + streamId);
            }
            Thread.onSpinWait();
        }
        return new BlockClient(requests, responses, channel);
    }

    /** Closes the publication and subscription. */
    public void close()
    {
        requests.close();
        responses.close();
    }

    /** Fetches blocks as demand (served before any prefetch). */
    public List<MemorySegment> fetch(final String modelVersion, final List<BlockId> ids, final long timeoutNanos)
        throws FetchException
    {
        return fetch(modelVersion, ids, timeoutNanos, 0);
    }

    /** Tells the server which blocks of a version are needed soon, so it promotes them toward memory. No reply. */
    public boolean hint(final String modelVersion, final List<BlockId> ids, final long timeoutNanos)
    {
        final dev.strata.transport.sbe.PrefetchHintEncoder hint = new dev.strata.transport.sbe.PrefetchHintEncoder();
        hint.wrapAndApplyHeader(out, 0, headerEncoder).timeoutNanos(timeoutNanos);
        final dev.strata.transport.sbe.PrefetchHintEncoder.BlocksEncoder group = hint.blocksCount(ids.size());
        for (final BlockId id : ids)
        {
            group.next().putDigest(id.sha256(), 0, BlockId.DIGEST_BYTES).contentLength(id.length());
        }
        hint.modelVersion(modelVersion);
        hint.token(token);
        return offerBriefly(MessageHeaderEncoder.ENCODED_LENGTH + hint.encodedLength());
    }

    /**
     * Offers {@code out[0, length)} for at most a millisecond: a message that must not block its caller (a hint, a
     * cancel) rides out a moment of back-pressure or a term rotation (ADMIN_ACTION) but not a full or lost server.
     */
    private boolean offerBriefly(final int length)
    {
        final long deadline = System.nanoTime() + 1_000_000L;
        long result;
        while ((result = requests.offer(out, 0, length)) < 0)
        {
            if (result == Publication.CLOSED || result == Publication.NOT_CONNECTED ||
                System.nanoTime() - deadline > 0)
            {
                return false;
            }
            Thread.onSpinWait();
        }
        return true;
    }

    /** Sends {@code token} with every request and hint: a service that protects reads requires its token. */
    public BlockClient token(final String token)
    {
        this.token = token == null ? "" : token;
        return this;
    }

    /**
     * Whether {@link #await} re-hashes every block against its SHA-256 id (the default). Chunks are always checked
     * with their CRC32C; turning this off trusts the server to serve what its id says (it verifies on upload).
     */
    public BlockClient verifyDigests(final boolean verify)
    {
        this.verifyDigests = verify;
        return this;
    }

    /**
     * Fetches blocks and waits for them.
     *
     * @param modelVersion the pinned version the blocks belong to ({@code model@number}).
     * @param ids          blocks to fetch (at most {@link #MAX_BLOCKS_PER_REQUEST} per call).
     * @param timeoutNanos how long to wait for all of them.
     * @param priority     0 for demand, higher for prefetch.
     * @return the blocks' contents, in order, verified.
     */
    public List<MemorySegment> fetch(final String modelVersion, final List<BlockId> ids, final long timeoutNanos,
        final int priority) throws FetchException
    {
        return await(submit(modelVersion, ids, timeoutNanos, priority));
    }

    /**
     * Sends a request without waiting: several can be in flight; {@link #await} collects each. Every submitted
     * request must be awaited (or it stays in memory until its deadline has passed and it is awaited).
     *
     * @return the request's correlation id.
     */
    public long submit(final String modelVersion, final List<BlockId> ids, final long timeoutNanos, final int priority)
        throws FetchException
    {
        return submit(modelVersion, ids, timeoutNanos, priority, -1, null, null);
    }

    /**
     * Like {@link #submit(String, List, long, int)}, but the blocks are written straight into {@code dest} (a
     * native segment of at most 2 GiB), block {@code i} at {@code offsets[i]}: the payload is copied once, from the
     * Aeron buffer to its final place. {@link #await} then returns slices of {@code dest}.
     */
    public long submitInto(final String modelVersion, final List<BlockId> ids, final MemorySegment dest,
        final long[] offsets, final long timeoutNanos, final int priority) throws FetchException
    {
        return submitInto(modelVersion, ids, dest, offsets, timeoutNanos, priority, -1);
    }

    /**
     * Like {@link #submitInto(String, List, MemorySegment, long[], long, int)}, for a prefetch that will be needed
     * in {@code neededInNanos} (negative: not known): the server serves prefetches earliest needed first.
     */
    public long submitInto(final String modelVersion, final List<BlockId> ids, final MemorySegment dest,
        final long[] offsets, final long timeoutNanos, final int priority, final long neededInNanos)
        throws FetchException
    {
        if (!dest.isNative() || dest.byteSize() > Integer.MAX_VALUE || offsets.length != ids.size())
        {
            throw new IllegalArgumentException("dest must be a native segment of at most 2 GiB, with one offset per block");
        }
        for (int i = 0; i < offsets.length; i++)
        {
            if (offsets[i] < 0 || offsets[i] + ids.get(i).length() > dest.byteSize())
            {
                throw new IllegalArgumentException("block " + i + " does not fit dest at offset " + offsets[i]);
            }
        }
        return submit(modelVersion, ids, timeoutNanos, priority, neededInNanos, dest, offsets);
    }

    /**
     * Gives up a request in flight: the server is told to drop what it has not sent yet (a prefetch that turned
     * out useless no longer takes the link, nor the CPU of both ends), and chunks still arriving for it are
     * ignored, so its destination may be reused as soon as this returns. Telling the server is best effort: if
     * the request channel is full, the server sends the rest and this client drops it.
     *
     * @return whether the request was in flight.
     */
    public boolean cancel(final long correlationId)
    {
        final Inflight f = inflight.get(correlationId);
        if (f == null)
        {
            return false;
        }
        receiver.forget(correlationId);
        sendCancel(correlationId);
        fence(f); // still in flight meanwhile: its last notices may complete it
        inflight.remove(correlationId);
        return true;
    }

    /**
     * For a placed request that did not complete: waits (up to {@link #FENCE_NANOS}, reading other answers meanwhile)
     * until the server says it will write no more into the destination, so the caller may reuse it. A server that
     * stays silent that long is taken to be gone.
     */
    private void fence(final Inflight f)
    {
        if (!f.placed || f.complete || f.ended)
        {
            return;
        }
        final long deadline = System.nanoTime() + FENCE_NANOS;
        while (!placementEnded.remove(f.correlationId) && !f.ended && !f.complete && System.nanoTime() < deadline)
        {
            if (responses.poll(assembler, 256) == 0)
            {
                Thread.yield();
            }
        }
        placementEnded.remove(f.correlationId);
    }

    private void sendCancel(final long correlationId)
    {
        cancelEncoder.wrapAndApplyHeader(out, 0, headerEncoder).correlationId(correlationId)
            .responseStreamId(responseStreamId);
        cancelEncoder.responseChannel(responseChannel);
        cancelEncoder.token(token);
        offerBriefly(MessageHeaderEncoder.ENCODED_LENGTH + cancelEncoder.encodedLength());
    }

    private long submit(final String modelVersion, final List<BlockId> ids, final long timeoutNanos, final int priority,
        final long neededInNanos, final MemorySegment dest, final long[] offsets) throws FetchException
    {
        if (ids.isEmpty() || ids.size() > MAX_BLOCKS_PER_REQUEST)
        {
            throw new IllegalArgumentException("fetch 1.." + MAX_BLOCKS_PER_REQUEST + " blocks per request, not " +
                ids.size());
        }
        final long deadline = System.nanoTime() + timeoutNanos;
        final long correlationId = nextCorrelationId++;
        requestEncoder.wrapAndApplyHeader(out, 0, headerEncoder).correlationId(correlationId)
            .timeoutNanos(timeoutNanos).priority((short)priority).responseStreamId(responseStreamId)
            .neededInNanos(priority == 0 ? 0 : neededInNanos);
        // direct placement when the destination is a shared region of this process and the server shares the host
        final SharedRegion region = dest != null && ipc && placement ? SharedRegion.containing(dest) : null;
        final BlockRequestEncoder.BlocksEncoder group = requestEncoder.blocksCount(ids.size());
        for (int i = 0; i < ids.size(); i++)
        {
            final BlockId id = ids.get(i);
            group.next().putDigest(id.sha256(), 0, BlockId.DIGEST_BYTES).contentLength(id.length())
                .placeAt(region == null ? -1 : region.offsetOf(dest) + offsets[i]);
        }
        requestEncoder.modelVersion(modelVersion);
        requestEncoder.responseChannel(responseChannel);
        requestEncoder.token(token);
        requestEncoder.placement(region == null ? "" : region.name());
        final int length = MessageHeaderEncoder.ENCODED_LENGTH + requestEncoder.encodedLength();
        final Inflight f = new Inflight(correlationId, List.copyOf(ids), deadline, dest, offsets, region != null);
        inflight.put(correlationId, f);
        if (!f.placed)
        {
            receiver.expect(correlationId, 0, f.parts);
        }
        long result;
        while ((result = requests.offer(out, 0, length)) < 0)
        {
            if (result == Publication.CLOSED || System.nanoTime() > deadline)
            {
                inflight.remove(correlationId);
                receiver.forget(correlationId);
                throw new FetchException(null, "could not send the request: " +
                    (result == Publication.NOT_CONNECTED ? "no block server connected" : "back-pressured until the deadline"));
            }
            responses.poll(assembler, 64); // keep draining answers while the request channel is full
        }
        return correlationId;
    }

    /** Waits for a submitted request (others in flight progress meanwhile); returns its blocks, in order. */
    public List<MemorySegment> await(final long correlationId) throws FetchException
    {
        final Inflight f = inflight.get(correlationId);
        if (f == null)
        {
            throw new IllegalArgumentException("no request " + correlationId + " in flight");
        }
        int empty = 0;
        try
        {
            while (!f.complete && f.failure == null)
            {
                if (System.nanoTime() > f.deadline)
                {
                    if (f.placed)
                    {
                        sendCancel(correlationId);
                        fence(f);
                    }
                    throw new FetchException(null, "timed out waiting for the " + f.count() + " blocks of request " +
                        correlationId);
                }
                if (responses.poll(assembler, 256) == 0)
                {
                    // spin briefly, then yield: on a host where the server (or its media driver) shares the
                    // cores, a client spinning flat out takes the CPU the answer needs
                    if (++empty < 64)
                    {
                        Thread.onSpinWait();
                    }
                    else
                    {
                        Thread.yield();
                    }
                }
                else
                {
                    empty = 0;
                }
            }
            if (f.failure != null)
            {
                if (f.placed)
                {
                    sendCancel(correlationId); // the server may be placing the other blocks: stop it, then fence
                    fence(f);
                }
                throw f.failure;
            }
            final List<MemorySegment> fetched = new java.util.ArrayList<>(f.count());
            for (int i = 0; i < f.count(); i++)
            {
                final MemorySegment bytes = f.parts[i];
                if (verifyDigests && !f.ids.get(i).matches(bytes))
                {
                    throw new FetchException(Status.CORRUPT, "block " + f.ids.get(i) + " arrived with other content");
                }
                fetched.add(bytes);
            }
            return fetched;
        }
        finally
        {
            inflight.remove(correlationId);
            receiver.forget(correlationId);
        }
    }

    /** Reads arrived answers without waiting; returns the fragments read. */
    public int poll()
    {
        return responses.poll(assembler, 256);
    }

    /** Whether {@link #await} on this request would return (or throw) at once. */
    public boolean isDone(final long correlationId)
    {
        final Inflight f = inflight.get(correlationId);
        return f == null || f.failure != null || f.complete || System.nanoTime() > f.deadline;
    }

    private void onFragment(final DirectBuffer buffer, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        if (length >= BulkFrame.HEADER_LENGTH && buffer.getInt(offset, ByteOrder.LITTLE_ENDIAN) == BulkFrame.MAGIC)
        {
            receiver.onFragment(buffer, offset, length, header); // payload: checked and copied into its part
            return;
        }
        headerDecoder.wrap(buffer, offset);
        if (headerDecoder.schemaId() != BlockChunkDecoder.SCHEMA_ID ||
            headerDecoder.templateId() != BlockChunkDecoder.TEMPLATE_ID)
        {
            return;
        }
        chunkDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        final Inflight f = inflight.get(chunkDecoder.correlationId());
        if (chunkDecoder.blockIndex() == PLACEMENT_ENDED)
        {
            if (f != null)
            {
                f.ended = true;
            }
            else
            {
                if (placementEnded.size() > 1024)
                {
                    placementEnded.clear(); // notices nobody waited for (fences that gave up)
                }
                placementEnded.add(chunkDecoder.correlationId()); // a cancel is waiting for it, or was
            }
            return;
        }
        if (f == null || f.failure != null)
        {
            return; // a late answer to a request given up on
        }
        final int index = chunkDecoder.blockIndex();
        final Status status = chunkDecoder.status();
        if (status == Status.UNAUTHORIZED)
        {
            fail(f, new FetchException(status, "the block service refused request " + f.correlationId + ": it " +
                "protects reads and the request did not carry its token"));
        }
        else if (index < 0 || index >= f.count())
        {
            fail(f, new FetchException(Status.UNAVAILABLE, "status for block #" + index + " of a " + f.count() +
                "-block request"));
        }
        else if (status == Status.OK && f.placed)
        {
            onPlaced(f, index);
        }
        else
        {
            fail(f, new FetchException(status == Status.OK ? Status.UNAVAILABLE : status, "block " + f.ids.get(index) +
                " (#" + index + " of request " + f.correlationId + "): " + (status == Status.OK ?
                "payload in the old chunk format (a block server older than this client)" : status)));
        }
    }

    /** A chunk the server copied into the shared region: checked against its checksum, then counted. */
    private void onPlaced(final Inflight f, final int index)
    {
        final long total = chunkDecoder.totalLength();
        final long at = chunkDecoder.chunkOffset();
        final MemorySegment part = f.parts[index];
        final long n = Math.min(BulkFrame.MAX_MTU_CHUNK_BYTES, total - at); // the server's chunk size
        if (total != part.byteSize() || at < 0 || n <= 0)
        {
            fail(f, new FetchException(Status.CORRUPT, "placed chunk at " + at + " of block #" + index +
                " announced for " + total + " bytes, not " + part.byteSize()));
            return;
        }
        if (BulkFrame.crc32c(part.asSlice(at, n)) != (int)chunkDecoder.crc32c())
        {
            fail(f, new FetchException(Status.CORRUPT, "chunk checksum mismatch in placed block #" + index +
                " of request " + f.correlationId));
            return;
        }
        f.placedBytes += n;
        if (f.placedBytes == f.expectedBytes)
        {
            f.complete = true;
        }
    }

    private void fail(final Inflight f, final FetchException failure)
    {
        f.failure = failure;
        receiver.forget(f.correlationId);
    }

    /** Every byte of a request's transfer arrived: complete, or failed if a chunk did not match its checksum. */
    private void onTransferDone(final BulkReceiver.Transfer t)
    {
        final Inflight f = inflight.get(t.id());
        if (f == null || f.failure != null)
        {
            return;
        }
        if (t.ok())
        {
            f.complete = true;
        }
        else
        {
            f.failure = new FetchException(Status.CORRUPT, t.error() != null ? "request " + t.id() + ": " + t.error() :
                "chunk checksum mismatch in request " + t.id() + " (" + t.corruptChunks() + " of " + t.chunks() +
                " chunks)");
        }
    }
}
