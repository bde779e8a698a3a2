package dev.strata.compute.gguf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;

/**
 * Writes GGUF v3 files: metadata with its declared types, tensor infos, and tensor data aligned to
 * {@code general.alignment} (32 by default). Tensor bytes are streamed, so files larger than the heap can be
 * written. The file appears atomically: it is written to a temporary sibling, forced, then renamed.
 */
public final class GgufWriter
{
    /** Produces a tensor's bytes into the channel; must write exactly {@code type.byteSize(elements)} bytes. */
    @FunctionalInterface
    public interface TensorBytes
    {
        void writeTo(FileChannel channel) throws IOException;
    }

    /**
     * One tensor to write.
     *
     * @param shape in ggml order (shape[0] is the row length).
     */
    public record Tensor(String name, GgmlType type, long[] shape, TensorBytes bytes)
    {
        long byteSize()
        {
            long n = 1;
            for (final long d : shape)
            {
                n *= d;
            }
            return type.byteSize(n);
        }
    }

    private GgufWriter()
    {
    }

    public static void write(final Path path, final GgufMetadata metadata, final List<Tensor> tensors)
        throws IOException
    {
        final int alignment = metadata.contains("general.alignment") ?
            metadata.getInt("general.alignment") : GgufFile.DEFAULT_ALIGNMENT;
        final Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING))
        {
            final Header h = new Header();
            h.i32(GgufFile.MAGIC).i32(3).i64(tensors.size()).i64(metadata.keys().size());
            for (final Map.Entry<String, GgufMetadata.Entry> e : metadata.entries().entrySet())
            {
                h.string(e.getKey());
                final GgufMetadata.Entry v = e.getValue();
                h.i32(v.type().id());
                if (v.type() == GgufValueType.ARRAY)
                {
                    h.i32(v.elementType().id());
                    h.array(v.elementType(), v.value());
                }
                else
                {
                    h.scalar(v.type(), v.value());
                }
            }
            long offset = 0;
            for (final Tensor t : tensors)
            {
                h.string(t.name());
                h.i32(t.shape().length);
                for (final long d : t.shape())
                {
                    h.i64(d);
                }
                h.i32(t.type().id());
                h.i64(offset);
                offset = GgufFile.alignUp(offset + t.byteSize(), alignment);
            }
            final ByteBuffer header = h.finish();
            final long dataStart = GgufFile.alignUp(header.remaining(), alignment);
            writeFully(ch, header);
            writeFully(ch, ByteBuffer.allocate((int)(dataStart - ch.position())));
            for (final Tensor t : tensors)
            {
                final long start = ch.position();
                t.bytes().writeTo(ch);
                final long written = ch.position() - start;
                if (written != t.byteSize())
                {
                    throw new IllegalStateException("tensor " + t.name() + " wrote " + written + " bytes, expected " +
                        t.byteSize());
                }
                final long pad = GgufFile.alignUp(written, alignment) - written;
                writeFully(ch, ByteBuffer.allocate((int)pad));
            }
            ch.force(true);
        }
        catch (final IOException | RuntimeException ex)
        {
            Files.deleteIfExists(tmp);
            throw ex;
        }
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public static void writeFully(final FileChannel ch, final ByteBuffer buffer) throws IOException
    {
        while (buffer.hasRemaining())
        {
            ch.write(buffer);
        }
    }

    /** Growable little-endian header buffer. */
    private static final class Header
    {
        private ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);

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

        Header i32(final int v)
        {
            ensure(4);
            buf.putInt(v);
            return this;
        }

        Header i64(final long v)
        {
            ensure(8);
            buf.putLong(v);
            return this;
        }

        Header string(final String s)
        {
            final byte[] b = s.getBytes(StandardCharsets.UTF_8);
            i64(b.length);
            ensure(b.length);
            buf.put(b);
            return this;
        }

        void scalar(final GgufValueType type, final Object v)
        {
            switch (type)
            {
                case UINT8, INT8, BOOL ->
                {
                    ensure(1);
                    buf.put(v instanceof Boolean b ? (byte)(b ? 1 : 0) : ((Number)v).byteValue());
                }
                case UINT16, INT16 ->
                {
                    ensure(2);
                    buf.putShort(((Number)v).shortValue());
                }
                case UINT32, INT32 -> i32(((Number)v).intValue());
                case FLOAT32 ->
                {
                    ensure(4);
                    buf.putFloat(((Number)v).floatValue());
                }
                case UINT64, INT64 -> i64(((Number)v).longValue());
                case FLOAT64 ->
                {
                    ensure(8);
                    buf.putDouble(((Number)v).doubleValue());
                }
                case STRING -> string((String)v);
                case ARRAY -> throw new IllegalArgumentException("nested arrays are written by array()");
            }
        }

        void array(final GgufValueType type, final Object array)
        {
            switch (array)
            {
                case String[] a ->
                {
                    i64(a.length);
                    for (final String s : a)
                    {
                        string(s);
                    }
                }
                case float[] a ->
                {
                    i64(a.length);
                    for (final float f : a)
                    {
                        scalar(type, f);
                    }
                }
                case int[] a ->
                {
                    i64(a.length);
                    for (final int x : a)
                    {
                        scalar(type, x);
                    }
                }
                case long[] a ->
                {
                    i64(a.length);
                    for (final long x : a)
                    {
                        scalar(type, x);
                    }
                }
                case double[] a ->
                {
                    i64(a.length);
                    for (final double x : a)
                    {
                        scalar(type, x);
                    }
                }
                case boolean[] a ->
                {
                    i64(a.length);
                    for (final boolean x : a)
                    {
                        scalar(type, x);
                    }
                }
                default -> throw new IllegalArgumentException("cannot write array of " + array.getClass());
            }
        }

        ByteBuffer finish()
        {
            buf.flip();
            return buf;
        }
    }
}
