package dev.strata.transport;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The identity of an immutable block: the SHA-256 of its content plus its length. Two blocks with the same id
 * hold the same bytes, so a block shared by two model versions is stored once.
 *
 * @param sha256 32 bytes of digest (never modified after construction).
 * @param length content length in bytes.
 */
public record BlockId(byte[] sha256, long length)
{
    public static final int DIGEST_BYTES = 32;
    private static final HexFormat HEX = HexFormat.of();

    public BlockId
    {
        if (sha256 == null || sha256.length != DIGEST_BYTES)
        {
            throw new IllegalArgumentException("a block id needs a 32-byte SHA-256 digest");
        }
        if (length <= 0)
        {
            throw new IllegalArgumentException("invalid block length=" + length + " (blocks are never empty)");
        }
        sha256 = sha256.clone();
    }

    /** The id of {@code content}. */
    public static BlockId of(final byte[] content)
    {
        final MessageDigest md = newDigest();
        md.update(content);
        return new BlockId(md.digest(), content.length);
    }

    /** The id of the bytes of {@code content}. */
    public static BlockId of(final MemorySegment content)
    {
        return new BlockId(digest(content), content.byteSize());
    }

    /** SHA-256 of a segment's bytes, read in 1 MiB slices (no full heap copy). */
    public static byte[] digest(final MemorySegment content)
    {
        final MessageDigest md = newDigest();
        final byte[] chunk = new byte[1 << 20];
        for (long off = 0; off < content.byteSize(); off += chunk.length)
        {
            final int n = (int)Math.min(chunk.length, content.byteSize() - off);
            MemorySegment.copy(content, ValueLayout.JAVA_BYTE, off, chunk, 0, n);
            md.update(chunk, 0, n);
        }
        return md.digest();
    }

    /** Whether {@code content} is exactly the block this id names. */
    public boolean matches(final MemorySegment content)
    {
        return content.byteSize() == length && MessageDigest.isEqual(digest(content), sha256);
    }

    /** Parses {@link #toString()}'s form: {@code <64 hex digits>-<length>}. */
    public static BlockId parse(final String text)
    {
        final int dash = text.indexOf('-');
        if (dash != 2 * DIGEST_BYTES)
        {
            throw new IllegalArgumentException("malformed block id '" + text + "' (expected <sha256 hex>-<length>)");
        }
        try
        {
            return new BlockId(HEX.parseHex(text, 0, dash), Long.parseLong(text.substring(dash + 1)));
        }
        catch (final IllegalArgumentException ex)
        {
            throw new IllegalArgumentException("malformed block id '" + text + "': " + ex.getMessage(), ex);
        }
    }

    /** A copy of the digest. */
    @Override
    public byte[] sha256()
    {
        return sha256.clone();
    }

    /** Hex digest alone (used for file names and keys). */
    public String hex()
    {
        return HEX.formatHex(sha256);
    }

    /** The digest as key bytes: 32 bytes of SHA-256 then 8 bytes of length, big-endian. */
    public byte[] keyBytes()
    {
        final byte[] key = new byte[DIGEST_BYTES + 8];
        System.arraycopy(sha256, 0, key, 0, DIGEST_BYTES);
        for (int i = 0; i < 8; i++)
        {
            key[DIGEST_BYTES + i] = (byte)(length >>> (56 - 8 * i));
        }
        return key;
    }

    @Override
    public boolean equals(final Object o)
    {
        return o instanceof BlockId other && other.length == length && java.util.Arrays.equals(other.sha256, sha256);
    }

    @Override
    public int hashCode()
    {
        return (sha256[0] & 0xFF) << 24 | (sha256[1] & 0xFF) << 16 | (sha256[2] & 0xFF) << 8 | (sha256[3] & 0xFF);
    }

    @Override
    public String toString()
    {
        return hex() + "-" + length;
    }

    private static MessageDigest newDigest()
    {
        try
        {
            return MessageDigest.getInstance("SHA-256");
        }
        catch (final NoSuchAlgorithmException ex)
        {
            throw new IllegalStateException("SHA-256 is missing from this JVM", ex);
        }
    }
}
