package dev.strata.paramserver;

import dev.strata.transport.sbe.BlockChunkEncoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.Status;
import io.aeron.Publication;
import org.agrona.concurrent.UnsafeBuffer;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * Encodes and offers {@code BlockChunk}s for the {@link BlockServer}, reusing one header buffer: a chunk is offered
 * as two buffers, the encoded header (with the var-data length) and the payload straight from the memory tier's
 * off-heap copy, so its bytes are copied once, into the Aeron log buffer. Returns false, never blocks, when the
 * publication cannot take it now. Used by the server's agent thread only.
 */
final class ChunkWriter
{
    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final BlockChunkEncoder chunkEncoder = new BlockChunkEncoder();
    private final UnsafeBuffer head = new UnsafeBuffer(ByteBuffer.allocateDirect(256));
    private final UnsafeBuffer payload = new UnsafeBuffer(0, 0);
    private final byte[] heapCopy = new byte[BlockServer.CHUNK_BYTES];
    private final CRC32C crc = new CRC32C();

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

    boolean sendChunk(final Publication publication, final long correlationId, final int blockIndex,
        final MemorySegment bytes, final long offset, final int n, final long total)
    {
        final MemorySegment slice = bytes.asSlice(offset, n);
        crc.reset();
        if (slice.isNative())
        {
            crc.update(slice.asByteBuffer());
            payload.wrap(slice.address(), n);
        }
        else
        {
            MemorySegment.copy(slice, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, heapCopy, 0, n);
            crc.update(heapCopy, 0, n);
            payload.wrap(heapCopy, 0, n);
        }
        final int headLength = encodeHead(correlationId, blockIndex, Status.OK, offset, total, crc.getValue(), n);
        return publication.offer(head, 0, headLength, payload, 0, n) > 0;
    }

    boolean sendStatus(final Publication publication, final long correlationId, final int blockIndex,
        final Status status)
    {
        final int headLength = encodeHead(correlationId, blockIndex, status, 0, 0, 0, 0);
        return publication.offer(head, 0, headLength) > 0;
    }
}
