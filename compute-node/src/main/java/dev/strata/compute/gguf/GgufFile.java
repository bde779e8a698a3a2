package dev.strata.compute.gguf;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A GGUF file (versions 2 and 3) mapped into memory: its metadata, its tensor infos and zero-copy views of
 * the tensor data.
 * <p>
 * Every count, length and offset read from the file is checked against the bytes that remain, so a truncated
 * or malformed file fails with a {@link GgufFormatException} naming the position and item, never with an
 * index error from deep inside.
 */
public final class GgufFile implements AutoCloseable
{
    public static final int MAGIC = 0x46554747; // "GGUF" little-endian
    public static final int DEFAULT_ALIGNMENT = 32;
    static final int MAX_DIMS = 4;
    private static final int MAX_KEY_LENGTH = 65_536;

    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment segment;
    private final int version;
    private final GgufMetadata metadata;
    private final Map<String, GgufTensorInfo> tensors;
    private final int alignment;
    private final long dataOffset;

    private GgufFile(
        final Path path,
        final Arena arena,
        final MemorySegment segment,
        final int version,
        final GgufMetadata metadata,
        final Map<String, GgufTensorInfo> tensors,
        final int alignment,
        final long dataOffset)
    {
        this.path = path;
        this.arena = arena;
        this.segment = segment;
        this.version = version;
        this.metadata = metadata;
        this.tensors = tensors;
        this.alignment = alignment;
        this.dataOffset = dataOffset;
    }

    /**
     * Maps and parses a GGUF file. The mapping stays valid until {@link #close()}.
     *
     * @throws GgufFormatException if the file is not a readable GGUF v2/v3 file.
     * @throws IOException         if the file cannot be opened or mapped.
     */
    public static GgufFile open(final Path path) throws IOException
    {
        final Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ))
        {
            final long size = channel.size();
            final MemorySegment segment = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            return parse(path, arena, segment);
        }
        catch (final GgufFormatException ex)
        {
            arena.close();
            throw new GgufFormatException(path + ": " + ex.getMessage(), ex);
        }
        catch (final IOException | RuntimeException ex)
        {
            arena.close();
            throw ex;
        }
    }

    /** Parses a GGUF image already in memory (the caller owns the segment's lifetime). */
    public static GgufFile parse(final MemorySegment segment)
    {
        return parse(null, null, segment);
    }

    private static GgufFile parse(final Path path, final Arena arena, final MemorySegment segment)
    {
        final Cursor in = new Cursor(segment);
        if (segment.byteSize() < 8)
        {
            throw new GgufFormatException("file too short for a GGUF header (" + segment.byteSize() + " bytes)");
        }
        final int magic = in.i32("magic");
        if (magic != MAGIC)
        {
            throw new GgufFormatException(String.format("not a GGUF file: magic 0x%08x, expected 0x%08x (\"GGUF\")",
                magic, MAGIC));
        }
        final int version = in.i32("version");
        if (version != 2 && version != 3)
        {
            throw new GgufFormatException("unsupported GGUF version " + version + " (supported: 2, 3)");
        }
        final long tensorCount = in.i64("tensor count");
        final long kvCount = in.i64("metadata count");
        // each tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes
        if (tensorCount < 0 || tensorCount > in.remaining() / 32)
        {
            throw new GgufFormatException("absurd tensor count " + tensorCount + " for a file of " +
                segment.byteSize() + " bytes");
        }
        if (kvCount < 0 || kvCount > in.remaining() / 12)
        {
            throw new GgufFormatException("absurd metadata count " + kvCount + " for a file of " +
                segment.byteSize() + " bytes");
        }

        final GgufMetadata metadata = new GgufMetadata();
        for (long i = 0; i < kvCount; i++)
        {
            final long at = in.position;
            final String key = in.string("metadata key #" + i, MAX_KEY_LENGTH);
            final int typeId = in.i32("type of " + key);
            final GgufValueType type = GgufValueType.fromId(typeId);
            if (type == null)
            {
                throw new GgufFormatException("metadata " + key + " at offset " + at + " has unknown type " + typeId);
            }
            if (type == GgufValueType.ARRAY)
            {
                final int elemId = in.i32("element type of " + key);
                final GgufValueType elemType = GgufValueType.fromId(elemId);
                if (elemType == null)
                {
                    throw new GgufFormatException("metadata array " + key + " has unknown element type " + elemId);
                }
                final long count = in.i64("length of " + key);
                metadata.putArray(key, elemType, in.array(key, elemType, count, 0));
            }
            else
            {
                metadata.put(key, type, in.scalar(key, type));
            }
        }

        int alignment = DEFAULT_ALIGNMENT;
        if (metadata.contains("general.alignment"))
        {
            alignment = metadata.getInt("general.alignment");
            if (alignment <= 0 || Integer.bitCount(alignment) != 1)
            {
                throw new GgufFormatException("general.alignment=" + alignment + " is not a positive power of two");
            }
        }

        final Map<String, GgufTensorInfo> tensors = new LinkedHashMap<>();
        for (long i = 0; i < tensorCount; i++)
        {
            final String name = in.string("name of tensor #" + i, MAX_KEY_LENGTH);
            final int nDims = in.i32("dimension count of " + name);
            if (nDims < 1 || nDims > MAX_DIMS)
            {
                throw new GgufFormatException("tensor " + name + " has " + nDims + " dimensions (1.." + MAX_DIMS + ")");
            }
            final long[] shape = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                shape[d] = in.i64("dimension " + d + " of " + name);
                if (shape[d] <= 0)
                {
                    throw new GgufFormatException("tensor " + name + " has dimension " + d + " = " + shape[d]);
                }
                try
                {
                    elements = Math.multiplyExact(elements, shape[d]);
                }
                catch (final ArithmeticException ex)
                {
                    throw new GgufFormatException("tensor " + name + " has an absurd shape " +
                        java.util.Arrays.toString(shape));
                }
            }
            final int typeId = in.i32("type of " + name);
            final GgmlType type = GgmlType.fromId(typeId);
            if (type == null)
            {
                throw new GgufFormatException("tensor " + name + " has unknown ggml type id " + typeId);
            }
            final long offset = in.i64("offset of " + name);
            if (shape[0] % type.blockSize() != 0)
            {
                throw new GgufFormatException("tensor " + name + " of type " + type + " has row length " + shape[0] +
                    ", not a multiple of its block size " + type.blockSize());
            }
            final long byteSize;
            try
            {
                byteSize = type.byteSize(elements);
            }
            catch (final ArithmeticException ex)
            {
                throw new GgufFormatException("tensor " + name + " is absurdly large: " + elements + " elements");
            }
            if (offset < 0 || offset % alignment != 0)
            {
                throw new GgufFormatException("tensor " + name + " has offset " + offset +
                    ", not a multiple of the alignment " + alignment);
            }
            if (tensors.put(name, new GgufTensorInfo(name, type, shape, offset, byteSize)) != null)
            {
                throw new GgufFormatException("duplicate tensor name " + name);
            }
        }

        final long dataOffset = alignUp(in.position, alignment);
        final long fileSize = segment.byteSize();
        for (final GgufTensorInfo t : tensors.values())
        {
            // compared without computing offset + size, which can wrap around to a small positive end
            if (t.offset() > fileSize - dataOffset || t.byteSize() > fileSize - dataOffset - t.offset())
            {
                final java.math.BigInteger end = java.math.BigInteger.valueOf(dataOffset)
                    .add(java.math.BigInteger.valueOf(t.offset())).add(java.math.BigInteger.valueOf(t.byteSize()));
                throw new GgufFormatException("truncated file: tensor " + t.name() + " ends at byte " + end +
                    " but the file has " + fileSize + " bytes");
            }
        }
        return new GgufFile(path, arena, segment, version, metadata, Collections.unmodifiableMap(tensors),
            alignment, dataOffset);
    }

    static long alignUp(final long value, final int alignment)
    {
        return (value + alignment - 1) / alignment * alignment;
    }

    public Path path()
    {
        return path;
    }

    public int version()
    {
        return version;
    }

    public GgufMetadata metadata()
    {
        return metadata;
    }

    /** Tensor infos in file order. */
    public Map<String, GgufTensorInfo> tensors()
    {
        return tensors;
    }

    public GgufTensorInfo tensor(final String name)
    {
        return tensors.get(name);
    }

    public int alignment()
    {
        return alignment;
    }

    /** Absolute file offset of the tensor data section. */
    public long dataOffset()
    {
        return dataOffset;
    }

    /** The whole mapped file. */
    public MemorySegment segment()
    {
        return segment;
    }

    /** A zero-copy view of one tensor's bytes. */
    public MemorySegment tensorData(final GgufTensorInfo info)
    {
        return segment.asSlice(dataOffset + info.offset(), info.byteSize());
    }

    @Override
    public void close()
    {
        if (arena != null)
        {
            arena.close();
        }
    }

    /** Bounds-checked little-endian reader over the header. */
    private static final class Cursor
    {
        private final MemorySegment segment;
        private long position;

        Cursor(final MemorySegment segment)
        {
            this.segment = segment;
        }

        long remaining()
        {
            return segment.byteSize() - position;
        }

        private void need(final long bytes, final String what)
        {
            if (bytes < 0 || bytes > remaining())
            {
                throw new GgufFormatException("truncated file: " + what + " at offset " + position + " needs " +
                    bytes + " bytes, " + remaining() + " remain");
            }
        }

        int i32(final String what)
        {
            need(4, what);
            final int v = segment.get(INT, position);
            position += 4;
            return v;
        }

        long i64(final String what)
        {
            need(8, what);
            final long v = segment.get(LONG, position);
            position += 8;
            return v;
        }

        String string(final String what, final long maxLength)
        {
            final long len = i64("length of " + what);
            if (len < 0 || len > maxLength)
            {
                throw new GgufFormatException(what + " at offset " + (position - 8) + " has absurd length " + len);
            }
            need(len, what);
            final byte[] bytes = segment.asSlice(position, len).toArray(ValueLayout.JAVA_BYTE);
            position += len;
            try
            {
                return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(bytes)).toString();
            }
            catch (final CharacterCodingException ex)
            {
                // token pieces of some vocabularies hold partial UTF-8 sequences: malformed bytes become U+FFFD
                return new String(bytes, StandardCharsets.UTF_8);
            }
        }

        Object scalar(final String key, final GgufValueType type)
        {
            final String what = "value of " + key;
            return switch (type)
            {
                case UINT8 -> { need(1, what); yield Byte.toUnsignedInt(segment.get(ValueLayout.JAVA_BYTE, position++)); }
                case INT8 -> { need(1, what); yield (int)segment.get(ValueLayout.JAVA_BYTE, position++); }
                case UINT16 -> { need(2, what); final int v = Short.toUnsignedInt(segment.get(SHORT, position)); position += 2; yield v; }
                case INT16 -> { need(2, what); final int v = segment.get(SHORT, position); position += 2; yield v; }
                case UINT32 -> Integer.toUnsignedLong(i32(what));
                case INT32 -> i32(what);
                case FLOAT32 -> { need(4, what); final float v = segment.get(FLOAT, position); position += 4; yield v; }
                case BOOL -> { need(1, what); final byte b = segment.get(ValueLayout.JAVA_BYTE, position++); yield b != 0; }
                case STRING -> string(what, remaining());
                case UINT64, INT64 -> i64(what);
                case FLOAT64 -> { need(8, what); final double v = segment.get(DOUBLE, position); position += 8; yield v; }
                case ARRAY -> throw new IllegalStateException("arrays are read by array()");
            };
        }

        Object array(final String key, final GgufValueType type, final long count, final int depth)
        {
            if (count < 0 || count > remaining() / type.minSize() || count > Integer.MAX_VALUE - 8)
            {
                throw new GgufFormatException("metadata array " + key + " at offset " + position +
                    " has absurd length " + count + " (" + remaining() + " bytes remain)");
            }
            final int n = (int)count;
            switch (type)
            {
                case STRING ->
                {
                    final String[] out = new String[n];
                    for (int i = 0; i < n; i++)
                    {
                        out[i] = string(key + "[" + i + "]", remaining());
                    }
                    return out;
                }
                case FLOAT32 ->
                {
                    need(4L * n, key);
                    final float[] out = segment.asSlice(position, 4L * n).toArray(FLOAT);
                    position += 4L * n;
                    return out;
                }
                case UINT8, INT8, UINT16, INT16, UINT32, INT32 ->
                {
                    final int[] out = new int[n];
                    for (int i = 0; i < n; i++)
                    {
                        out[i] = ((Number)scalar(key, type)).intValue();
                    }
                    return out;
                }
                case UINT64, INT64 ->
                {
                    final long[] out = new long[n];
                    for (int i = 0; i < n; i++)
                    {
                        out[i] = i64(key);
                    }
                    return out;
                }
                case FLOAT64 ->
                {
                    final double[] out = new double[n];
                    for (int i = 0; i < n; i++)
                    {
                        out[i] = (Double)scalar(key, type);
                    }
                    return out;
                }
                case BOOL ->
                {
                    final boolean[] out = new boolean[n];
                    for (int i = 0; i < n; i++)
                    {
                        out[i] = (Boolean)scalar(key, type);
                    }
                    return out;
                }
                case ARRAY ->
                {
                    if (depth > 4)
                    {
                        throw new GgufFormatException("metadata array " + key + " nests too deeply");
                    }
                    final Object[] out = new Object[n];
                    for (int i = 0; i < n; i++)
                    {
                        final GgufValueType inner = GgufValueType.fromId(i32("element type of " + key));
                        if (inner == null)
                        {
                            throw new GgufFormatException("metadata array " + key + " has an unknown nested type");
                        }
                        out[i] = array(key, inner, i64("length of " + key), depth + 1);
                    }
                    return out;
                }
                default -> throw new IllegalStateException();
            }
        }
    }
}
