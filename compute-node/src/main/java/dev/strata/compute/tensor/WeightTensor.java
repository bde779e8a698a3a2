package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A 2-D weight matrix in its stored (possibly quantized) layout, viewed over a {@link MemorySegment} without
 * copying: {@code rows} rows of {@code cols} elements, row-major, each row a whole number of quantization
 * blocks.
 * <p>
 * A type is one subclass with two kernels: {@link #dot} (a row against a float vector, used by decode) and
 * {@link #dequantize} (used by batched prefill, a column block at a time, and embedding lookup). Both are Vector API kernels; the
 * tests check them against scalar dequantize-then-compute references.
 */
public abstract class WeightTensor
{
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    protected final String name;
    protected final GgmlType type;
    protected final MemorySegment data;
    protected final int rows;
    protected final int cols;
    protected final long rowBytes;

    protected WeightTensor(final String name, final GgmlType type, final MemorySegment data, final int rows,
        final int cols)
    {
        this.name = name;
        this.type = type;
        // One segment class for every kernel call site: a file mapping (MappedMemorySegmentImpl) and an arena
        // allocation (NativeMemorySegmentImpl) are different classes, and weights of both kinds in one JVM (a local
        // model next to streamed blocks) make the kernels' memory accesses polymorphic, measured at half the decode
        // speed. reinterpret gives a plain native segment over the same memory with the same scope (liveness checks
        // stay).
        this.data = data.isNative() ? data.reinterpret(data.byteSize()) : data;
        this.rows = rows;
        this.cols = cols;
        this.rowBytes = type.byteSize(cols);
        final long need = rowBytes * rows;
        if (data.byteSize() < need)
        {
            throw new IllegalArgumentException("tensor " + name + " needs " + need + " bytes for " + rows + "x" + cols +
                " " + type + ", got " + data.byteSize());
        }
    }

    /**
     * Views {@code data} as a {@code rows x cols} matrix of {@code type}.
     *
     * @throws UnsupportedTensorTypeException if Strata has no kernels for the type.
     */
    public static WeightTensor of(final String name, final GgmlType type, final MemorySegment data, final int rows,
        final int cols)
    {
        if (cols % type.blockSize() != 0)
        {
            throw new IllegalArgumentException("tensor " + name + ": row length " + cols + " is not a multiple of the " +
                type + " block size " + type.blockSize());
        }
        return switch (type)
        {
            case F32 -> new F32Tensor(name, data, rows, cols);
            case F16 -> new F16Tensor(name, data, rows, cols);
            case BF16 -> new BF16Tensor(name, data, rows, cols);
            case Q8_0 -> new Q8_0Tensor(name, data, rows, cols);
            case Q4_0 -> new Q4_0Tensor(name, data, rows, cols);
            case Q4_K -> new Q4_KTensor(name, data, rows, cols);
            case Q6_K -> new Q6_KTensor(name, data, rows, cols);
            default -> throw new UnsupportedTensorTypeException(
                "tensor " + name + " has type " + type + ", which Strata cannot compute with " +
                "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
        };
    }

    public String name()
    {
        return name;
    }

    public GgmlType type()
    {
        return type;
    }

    public int rows()
    {
        return rows;
    }

    public int cols()
    {
        return cols;
    }

    public MemorySegment data()
    {
        return data;
    }

    /** Bytes of weights in the whole matrix. */
    public long byteSize()
    {
        return rowBytes * rows;
    }

    /** Dot product of row {@code row} with {@code x[xOffset .. xOffset + cols)}. */
    public abstract float dot(int row, float[] x, int xOffset);

    /** Writes row {@code row}, dequantized, into {@code dst[dstOffset .. dstOffset + cols)}. */
    public final void dequantizeRow(final int row, final float[] dst, final int dstOffset)
    {
        dequantize(row, 0, cols, dst, dstOffset);
    }

    /**
     * Writes elements {@code [col0, col0 + n)} of row {@code row}, dequantized, into
     * {@code dst[dstOffset .. dstOffset + n)}. {@code col0} and {@code n} are multiples of the type's block size.
     */
    public abstract void dequantize(int row, int col0, int n, float[] dst, int dstOffset);

    /** Scalar fallback of {@link #dot} for machines without usable vectors: dequantize the row, then sum. */
    protected final float dotByDequantizing(final int row, final float[] x, final int xOffset)
    {
        final float[] tmp = new float[cols];
        dequantizeRow(row, tmp, 0);
        float sum = 0f;
        for (int i = 0; i < cols; i++)
        {
            sum += tmp[i] * x[xOffset + i];
        }
        return sum;
    }

    static float f16(final MemorySegment s, final long offset)
    {
        return Float.float16ToFloat(s.get(SHORT_LE, offset));
    }
}
