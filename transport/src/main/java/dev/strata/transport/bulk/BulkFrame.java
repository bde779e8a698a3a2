package dev.strata.transport.bulk;

import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;

/**
 * The frame of one chunk of a bulk transfer: a fixed little-endian header, then the payload. A chunk never spans
 * Aeron fragments (its size is the publication's largest unfragmented payload), so the receiver copies each payload
 * once, straight from the log buffer into the caller's memory.
 * <pre>
 *   0  int32  magic 'SBLK'
 *   4  int32  attempt      (a resend of the transfer has a higher one; older chunks are dropped)
 *   8  int64  transferId
 *  16  int32  part         (index of the destination segment)
 *  20  int32  offset       (in the part)
 *  24  int32  length       (of the payload)
 *  28  int32  crc32c       (of the payload)
 *  32         payload
 * </pre>
 */
public final class BulkFrame
{
    public static final int MAGIC = 0x4B4C4253;
    public static final int MAGIC_OFFSET = 0;
    public static final int ATTEMPT_OFFSET = 4;
    public static final int TRANSFER_ID_OFFSET = 8;
    public static final int PART_OFFSET = 16;
    public static final int OFFSET_OFFSET = 20;
    public static final int LENGTH_OFFSET = 24;
    public static final int CRC_OFFSET = 28;
    public static final int HEADER_LENGTH = 32;
    /** Payload of a chunk in one frame at Aeron's largest MTU (65,504 bytes, less its 32-byte data header). */
    public static final int MAX_MTU_CHUNK_BYTES = 65_504 - 32 - HEADER_LENGTH;

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private BulkFrame()
    {
    }

    static void encode(final MutableDirectBuffer b, final int attempt, final long transferId, final int part,
        final int offset, final int length, final int crc)
    {
        b.putInt(MAGIC_OFFSET, MAGIC, LE);
        b.putInt(ATTEMPT_OFFSET, attempt, LE);
        b.putLong(TRANSFER_ID_OFFSET, transferId, LE);
        b.putInt(PART_OFFSET, part, LE);
        b.putInt(OFFSET_OFFSET, offset, LE);
        b.putInt(LENGTH_OFFSET, length, LE);
        b.putInt(CRC_OFFSET, crc, LE);
    }

    static int magic(final DirectBuffer b, final int at)
    {
        return b.getInt(at + MAGIC_OFFSET, LE);
    }

    static int attempt(final DirectBuffer b, final int at)
    {
        return b.getInt(at + ATTEMPT_OFFSET, LE);
    }

    static long transferId(final DirectBuffer b, final int at)
    {
        return b.getLong(at + TRANSFER_ID_OFFSET, LE);
    }

    static int part(final DirectBuffer b, final int at)
    {
        return b.getInt(at + PART_OFFSET, LE);
    }

    static int offset(final DirectBuffer b, final int at)
    {
        return b.getInt(at + OFFSET_OFFSET, LE);
    }

    static int length(final DirectBuffer b, final int at)
    {
        return b.getInt(at + LENGTH_OFFSET, LE);
    }

    static int crc(final DirectBuffer b, final int at)
    {
        return b.getInt(at + CRC_OFFSET, LE);
    }

    /** CRC32C of off-heap bytes (the JDK's intrinsic). */
    public static int crc32c(final MemorySegment bytes)
    {
        final CRC32C crc = new CRC32C();
        crc.update(bytes.asByteBuffer()); // direct buffer for native segments, heap buffer for arrays
        return (int)crc.getValue();
    }
}
