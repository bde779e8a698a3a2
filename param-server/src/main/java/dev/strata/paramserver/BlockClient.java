package dev.strata.paramserver;

import dev.strata.tiering.BlockId;
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
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Fetches blocks from a {@link BlockServer}: one request per call, chunks reassembled per block, each chunk's
 * CRC32C and each block's SHA-256 checked, a bounded wait. Not thread-safe: one fetch at a time per client.
 */
public final class BlockClient
{
    /** A fetch that failed: the status says whether retrying can help. */
    public static final class FetchException extends IOException
    {
        private final Status status;

        FetchException(final Status status, final String message)
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
    /** Blocks per request at most (the request must fit one Aeron message). */
    public static final int MAX_BLOCKS_PER_REQUEST = 1000;

    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final BlockRequestEncoder requestEncoder = new BlockRequestEncoder();
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final BlockChunkDecoder chunkDecoder = new BlockChunkDecoder();
    private final UnsafeBuffer out = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
    private final CRC32C crc = new CRC32C();
    private long nextCorrelationId = new java.security.SecureRandom().nextLong() & 0x7fff_ffff_0000_0000L;

    // state of the fetch in progress
    private long correlationId;
    private byte[][] blocks;
    private List<BlockId> expected;
    private long[] received;
    private FetchException failure;
    private final FragmentAssembler assembler = new FragmentAssembler(this::onFragment);

    /**
     * @param requests  publication to the server's request channel.
     * @param responses this client's own subscription; the server answers on its channel and stream.
     */
    public BlockClient(final Publication requests, final Subscription responses)
    {
        this.requests = requests;
        this.responses = responses;
        this.responseChannel = responses.channel();
        this.responseStreamId = responses.streamId();
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
        return requests.offer(out, 0, MessageHeaderEncoder.ENCODED_LENGTH + hint.encodedLength()) > 0;
    }

    /**
     * @param modelVersion the pinned version the blocks belong to.
     * @param ids          blocks to fetch (at most 1000 per call).
     * @param timeoutNanos how long to wait for all of them.
     * @param priority     0 for demand, higher for prefetch.
     * @return the blocks' contents, in order, verified.
     */
    public List<MemorySegment> fetch(final String modelVersion, final List<BlockId> ids, final long timeoutNanos,
        final int priority) throws FetchException
    {
        if (ids.isEmpty() || ids.size() > MAX_BLOCKS_PER_REQUEST)
        {
            throw new IllegalArgumentException("fetch 1.." + MAX_BLOCKS_PER_REQUEST + " blocks per request, not " +
                ids.size());
        }
        final long deadline = System.nanoTime() + timeoutNanos;
        correlationId = nextCorrelationId++;
        blocks = new byte[ids.size()][];
        expected = ids;
        received = new long[ids.size()];
        failure = null;

        requestEncoder.wrapAndApplyHeader(out, 0, headerEncoder).correlationId(correlationId)
            .timeoutNanos(timeoutNanos).priority((short)priority).responseStreamId(responseStreamId);
        final BlockRequestEncoder.BlocksEncoder group = requestEncoder.blocksCount(ids.size());
        for (final BlockId id : ids)
        {
            group.next().putDigest(id.sha256(), 0, BlockId.DIGEST_BYTES).contentLength(id.length());
        }
        requestEncoder.modelVersion(modelVersion);
        requestEncoder.responseChannel(responseChannel);
        final int length = MessageHeaderEncoder.ENCODED_LENGTH + requestEncoder.encodedLength();
        long result;
        while ((result = requests.offer(out, 0, length)) < 0)
        {
            if (result == Publication.CLOSED || System.nanoTime() > deadline)
            {
                throw new FetchException(null, "could not send the request: " +
                    (result == Publication.NOT_CONNECTED ? "no block server connected" : "back-pressured until the deadline"));
            }
            Thread.onSpinWait();
        }
        while (!complete())
        {
            if (failure != null)
            {
                throw failure;
            }
            if (System.nanoTime() > deadline)
            {
                throw new FetchException(null, "timed out waiting for blocks of request " + correlationId);
            }
            if (responses.poll(assembler, 64) == 0)
            {
                Thread.onSpinWait();
            }
        }
        final List<MemorySegment> fetched = new java.util.ArrayList<>(ids.size());
        for (int i = 0; i < ids.size(); i++)
        {
            final MemorySegment bytes = MemorySegment.ofArray(blocks[i]);
            if (!ids.get(i).matches(bytes))
            {
                throw new FetchException(Status.CORRUPT, "block " + ids.get(i) + " arrived with other content");
            }
            fetched.add(bytes);
        }
        return fetched;
    }

    private boolean complete()
    {
        for (int i = 0; i < blocks.length; i++)
        {
            if (blocks[i] == null || received[i] < blocks[i].length)
            {
                return false;
            }
        }
        return failure == null;
    }

    private void onFragment(final DirectBuffer buffer, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        headerDecoder.wrap(buffer, offset);
        if (headerDecoder.schemaId() != BlockChunkDecoder.SCHEMA_ID ||
            headerDecoder.templateId() != BlockChunkDecoder.TEMPLATE_ID)
        {
            return;
        }
        chunkDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        if (chunkDecoder.correlationId() != correlationId)
        {
            return; // a late answer to an earlier request
        }
        final int index = chunkDecoder.blockIndex();
        final Status status = chunkDecoder.status();
        if (index >= blocks.length)
        {
            failure = new FetchException(Status.UNAVAILABLE, "chunk for block #" + index + " of a " + blocks.length +
                "-block request");
            return;
        }
        if (status != Status.OK)
        {
            failure = new FetchException(status, "block #" + index + " of request " + correlationId + ": " + status);
            return;
        }
        final long total = chunkDecoder.totalLength();
        final long chunkOffset = chunkDecoder.chunkOffset();
        final long expectedCrc = chunkDecoder.crc32c();
        final int n = chunkDecoder.payloadLength();
        if (total != expected.get(index).length())
        {
            failure = new FetchException(Status.CORRUPT, "block #" + index + " announced " + total + " bytes, not " +
                expected.get(index).length());
            return;
        }
        if (blocks[index] == null)
        {
            blocks[index] = new byte[(int)total];
        }
        if (total != blocks[index].length || chunkOffset < 0 || chunkOffset + n > total)
        {
            failure = new FetchException(Status.CORRUPT, "malformed chunk for block #" + index);
            return;
        }
        chunkDecoder.getPayload(blocks[index], (int)chunkOffset, n);
        crc.reset();
        crc.update(blocks[index], (int)chunkOffset, n);
        if (crc.getValue() != expectedCrc)
        {
            failure = new FetchException(Status.CORRUPT, "chunk checksum mismatch in block #" + index);
            return;
        }
        received[index] += n;
    }
}
