package dev.strata.transport.bulk;

import io.aeron.Publication;
import org.agrona.concurrent.UnsafeBuffer;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;

/**
 * Offers one {@link BulkFrame} chunk at a time and never waits: the building block of {@link BulkSender} (which
 * waits out back-pressure for one transfer) and of servers that interleave many transfers on one thread (the block
 * server, which must let a demand fetch overtake a prefetch between two chunks). The chunk goes out as two
 * buffers, the header and a view of the caller's off-heap bytes, so Aeron's copy into its log is the only one.
 * One writer per thread.
 */
public final class BulkChunkWriter
{
    /** Pass as the checksum to have it computed here. */
    public static final long COMPUTE_CRC = Long.MIN_VALUE;

    private final UnsafeBuffer header = new UnsafeBuffer(ByteBuffer.allocateDirect(BulkFrame.HEADER_LENGTH));
    private final UnsafeBuffer payload = new UnsafeBuffer(0, 0);
    private byte[] heapCopy = new byte[0];

    /** Largest chunk payload a publication carries unfragmented. */
    public static int chunkBytes(final Publication publication)
    {
        return publication.maxPayloadLength() - BulkFrame.HEADER_LENGTH;
    }

    /**
     * Offers {@code chunk} as bytes {@code [offset, offset + chunk.byteSize())} of part {@code part} of a transfer.
     *
     * @param crc the chunk's CRC32C (immutable sources can keep it), or {@link #COMPUTE_CRC}.
     * @return Aeron's result: positive when sent, else {@link Publication#BACK_PRESSURED},
     *         {@link Publication#NOT_CONNECTED}, {@link Publication#ADMIN_ACTION}, {@link Publication#CLOSED} or
     *         {@link Publication#MAX_POSITION_EXCEEDED}.
     */
    public long tryOffer(final Publication publication, final long transferId, final int attempt, final int part,
        final int offset, final MemorySegment chunk, final long crc)
    {
        final int len = (int)chunk.byteSize();
        final int sum = crc == COMPUTE_CRC ? BulkFrame.crc32c(chunk) : (int)crc;
        BulkFrame.encode(header, attempt, transferId, part, offset, len, sum);
        if (chunk.isNative())
        {
            payload.wrap(chunk.address(), len);
        }
        else
        {
            if (heapCopy.length < len)
            {
                heapCopy = new byte[len];
            }
            MemorySegment.copy(chunk, ValueLayout.JAVA_BYTE, 0, heapCopy, 0, len);
            payload.wrap(heapCopy, 0, len);
        }
        return publication.offer(header, 0, BulkFrame.HEADER_LENGTH, payload, 0, len);
    }
}
