package dev.strata.tiering;

import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Exception;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The stored form of a block in the SSD and object tiers: LZ4 where it pays, raw otherwise.
 * <pre>
 *  raw:  +------+---------------------------+
 *        | 0x00 | content                   |
 *        +------+---------------------------+
 *  lz4:  +------+-----------------+---------------------+
 *        | 0x01 | raw length (8B) | LZ4 block           |
 *        +------+-----------------+---------------------+
 * </pre>
 * Compression is kept only when it saves at least {@value #MIN_SAVING_PERCENT}% (quantized weights rarely
 * compress; norms and embeddings of some models do). Decoding uses the safe decompressor, and the caller
 * verifies the decoded bytes against the block id, so a corrupt stored form is detected either way.
 */
public final class BlockCodec
{
    static final byte RAW = 0;
    static final byte LZ4 = 1;
    static final int MIN_SAVING_PERCENT = 10;
    private static final int LZ4_HEADER = 1 + 8;

    private final LZ4Compressor compressor = LZ4Factory.fastestInstance().fastCompressor();
    private final LZ4SafeDecompressor decompressor = LZ4Factory.fastestInstance().safeDecompressor();
    private final boolean compress;

    /** @param compress whether to try LZ4 at all (decoding always understands both forms). */
    public BlockCodec(final boolean compress)
    {
        this.compress = compress;
    }

    /** The stored form of {@code content}. */
    public MemorySegment encode(final MemorySegment content)
    {
        final long n = content.byteSize();
        if (compress && n <= Integer.MAX_VALUE - LZ4_HEADER)
        {
            final ByteBuffer src = content.asByteBuffer();
            final ByteBuffer dst = ByteBuffer.allocate(LZ4_HEADER + compressor.maxCompressedLength((int)n))
                .order(ByteOrder.LITTLE_ENDIAN);
            dst.put(LZ4).putLong(n);
            compressor.compress(src, dst);
            final int stored = dst.position();
            if (stored * 100L <= n * (100 - MIN_SAVING_PERCENT))
            {
                return MemorySegment.ofArray(java.util.Arrays.copyOf(dst.array(), stored));
            }
        }
        final byte[] raw = new byte[(int)Math.min(Integer.MAX_VALUE, n + 1)];
        raw[0] = RAW;
        MemorySegment.copy(content, ValueLayout.JAVA_BYTE, 0, raw, 1, (int)n);
        return MemorySegment.ofArray(raw);
    }

    /**
     * The content of a stored form, or {@code null} if the stored form is malformed (the caller treats that
     * like a checksum mismatch: a corrupt copy).
     */
    public MemorySegment decode(final MemorySegment stored)
    {
        if (stored.byteSize() < 1)
        {
            return null;
        }
        final byte kind = stored.get(ValueLayout.JAVA_BYTE, 0);
        if (kind == RAW)
        {
            return stored.asSlice(1);
        }
        if (kind != LZ4 || stored.byteSize() < LZ4_HEADER)
        {
            return null;
        }
        final long rawLength = stored.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 1);
        if (rawLength <= 0 || rawLength > Integer.MAX_VALUE)
        {
            return null;
        }
        final ByteBuffer dst = ByteBuffer.allocate((int)rawLength);
        try
        {
            decompressor.decompress(stored.asSlice(LZ4_HEADER).asByteBuffer(), dst);
        }
        catch (final LZ4Exception ex)
        {
            return null;
        }
        return dst.position() == rawLength ? MemorySegment.ofArray(dst.array()) : null;
    }
}
