package dev.strata.compute.gguf;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** Hand-assembles GGUF images, valid or not, for the reader tests. */
final class GgufBytes
{
    private ByteBuffer buf = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN);

    /** Magic, version and counts. */
    static GgufBytes header(final int version, final long tensors, final long kvs)
    {
        return new GgufBytes().i32(GgufFile.MAGIC).i32(version).i64(tensors).i64(kvs);
    }

    private void ensure(final int n)
    {
        if (buf.remaining() < n)
        {
            final ByteBuffer bigger = ByteBuffer.allocate(Math.max(buf.capacity() * 2, buf.position() + n))
                .order(ByteOrder.LITTLE_ENDIAN);
            buf.flip();
            bigger.put(buf);
            buf = bigger;
        }
    }

    GgufBytes u8(final int v)
    {
        ensure(1);
        buf.put((byte)v);
        return this;
    }

    GgufBytes i32(final int v)
    {
        ensure(4);
        buf.putInt(v);
        return this;
    }

    GgufBytes i64(final long v)
    {
        ensure(8);
        buf.putLong(v);
        return this;
    }

    GgufBytes str(final String s)
    {
        final byte[] b = s.getBytes(StandardCharsets.UTF_8);
        i64(b.length);
        ensure(b.length);
        buf.put(b);
        return this;
    }

    GgufBytes kvString(final String key, final String value)
    {
        return str(key).i32(GgufValueType.STRING.id()).str(value);
    }

    GgufBytes kvU32(final String key, final int value)
    {
        return str(key).i32(GgufValueType.UINT32.id()).i32(value);
    }

    GgufBytes tensor(final String name, final long[] dims, final int typeId, final long offset)
    {
        str(name).i32(dims.length);
        for (final long d : dims)
        {
            i64(d);
        }
        return i32(typeId).i64(offset);
    }

    GgufBytes zeros(final int n)
    {
        ensure(n);
        buf.put(new byte[n]);
        return this;
    }

    GgufBytes padTo(final int alignment)
    {
        return zeros((int)(GgufFile.alignUp(buf.position(), alignment) - buf.position()));
    }

    int size()
    {
        return buf.position();
    }

    byte[] bytes()
    {
        return Arrays.copyOf(buf.array(), buf.position());
    }

    GgufFile parse()
    {
        return GgufFile.parse(MemorySegment.ofArray(bytes()));
    }
}
