package dev.strata.paramserver;

import dev.strata.transport.sbe.BlockChunkEncoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.Status;
import io.aeron.Publication;
import org.agrona.concurrent.UnsafeBuffer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Encodes and offers the {@link BlockServer}'s error answers: a {@code BlockChunk} with a status and no payload (the
 * payload itself goes as bulk frames). Returns false, never blocks, when the publication cannot take it now. Used by
 * the server's agent thread only.
 */
final class ChunkWriter
{
    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final BlockChunkEncoder chunkEncoder = new BlockChunkEncoder();
    private final UnsafeBuffer head = new UnsafeBuffer(ByteBuffer.allocateDirect(256));

    private int encodeHead(final long correlationId, final int blockIndex, final Status status, final long chunkOffset,
        final long totalLength, final long crc32c, final int payloadLength)
    {
        chunkEncoder.wrapAndApplyHeader(head, 0, headerEncoder)
            .correlationId(correlationId).status(status).blockIndex(blockIndex)
            .chunkOffset(chunkOffset).totalLength(totalLength).crc32c(crc32c);
        final int limit = chunkEncoder.limit();
        head.putInt(limit, payloadLength, ByteOrder.LITTLE_ENDIAN); // the var-data length; the bytes follow
        return limit + 4;
    }

    boolean sendStatus(final Publication publication, final long correlationId, final int blockIndex,
        final Status status)
    {
        final int headLength = encodeHead(correlationId, blockIndex, status, 0, 0, 0, 0);
        return publication.offer(head, 0, headLength) > 0;
    }

    /**
     * Tells the client that bytes {@code [chunkOffset, chunkOffset + min(chunk, total - chunkOffset))} of a block are
     * in its shared region (a direct placement), with their CRC32C: a {@code BlockChunk} with status OK and no
     * payload.
     */
    boolean sendPlaced(final Publication publication, final long correlationId, final int blockIndex,
        final long chunkOffset, final long totalLength, final int crc)
    {
        final int headLength = encodeHead(correlationId, blockIndex, Status.OK, chunkOffset, totalLength,
            crc & 0xFFFF_FFFFL, 0);
        return publication.offer(head, 0, headLength) > 0;
    }

    /** Block index of the notice that ends a placed request (requests hold at most 1,000 blocks). */
    static final int PLACEMENT_ENDED = 0xFFFF;

    /**
     * Tells the client that the server will write no more into its region for this request (the fence that lets it
     * reuse the destination of a request it cancelled, or that failed). A few tries; the client waits a bounded time
     * for it anyway.
     */
    boolean sendPlacementEnded(final Publication publication, final long correlationId)
    {
        final int headLength = encodeHead(correlationId, PLACEMENT_ENDED, Status.OK, 0, -1, 0, 0);
        for (int i = 0; i < 16; i++)
        {
            if (publication.offer(head, 0, headLength) > 0)
            {
                return true;
            }
            Thread.onSpinWait();
        }
        return false;
    }
}
