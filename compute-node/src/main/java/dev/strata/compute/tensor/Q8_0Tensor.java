package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.strata.compute.tensor.Vectors.BQ;
import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.PARTS_32;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Q8_0: blocks of 32 weights, each an f16 scale {@code d} followed by 32 signed bytes; {@code w = d * q}.
 * <pre>
 *  0      2                                  34
 *  +------+----------------------------------+
 *  | d f16| q[0] ... q[31]  (int8)           |
 *  +------+----------------------------------+
 * </pre>
 */
final class Q8_0Tensor extends WeightTensor
{
    static final int BLOCK = 32;
    static final int BYTES = 34;

    Q8_0Tensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.Q8_0, data, rows, cols);
    }

    @Override
    public float dot(final int row, final float[] x, final int xOffset)
    {
        return VECTOR_OK ? dotVector(row, x, xOffset) : dotScalar(row, x, xOffset);
    }

    private float dotVector(final int row, final float[] x, final int xOffset)
    {
        final int blocks = cols / BLOCK;
        long off = row * rowBytes;
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = FloatVector.zero(F);
        int b = 0;
        for (; b + 1 < blocks; b += 2, off += 2 * BYTES)
        {
            acc0 = block(off, x, xOffset + b * BLOCK).fma(FloatVector.broadcast(F, f16(data, off)), acc0);
            acc1 = block(off + BYTES, x, xOffset + (b + 1) * BLOCK).fma(FloatVector.broadcast(F, f16(data, off + BYTES)), acc1);
        }
        if (b < blocks)
        {
            acc0 = block(off, x, xOffset + b * BLOCK).fma(FloatVector.broadcast(F, f16(data, off)), acc0);
        }
        return Lanes.sum(acc0.add(acc1));
    }

    /** Unscaled products of one block's 32 quants with x, folded into one vector. */
    private FloatVector block(final long off, final float[] x, final int xi)
    {
        FloatVector s = ((FloatVector)ByteVector.fromMemorySegment(BQ, data, off + 2, ByteOrder.LITTLE_ENDIAN)
            .convertShape(VectorOperators.B2F, F, 0)).mul(FloatVector.fromArray(F, x, xi));
        for (int p = 1; p < PARTS_32; p++)
        {
            s = ((FloatVector)ByteVector.fromMemorySegment(BQ, data, off + 2 + p * LANES, ByteOrder.LITTLE_ENDIAN)
                .convertShape(VectorOperators.B2F, F, 0)).fma(FloatVector.fromArray(F, x, xi + p * LANES), s);
        }
        return s;
    }

    private float dotScalar(final int row, final float[] x, final int xOffset)
    {
        final int blocks = cols / BLOCK;
        long off = row * rowBytes;
        float sum = 0f;
        for (int b = 0; b < blocks; b++, off += BYTES)
        {
            float s = 0f;
            for (int j = 0; j < BLOCK; j++)
            {
                s += data.get(ValueLayout.JAVA_BYTE, off + 2 + j) * x[xOffset + b * BLOCK + j];
            }
            sum += s * f16(data, off);
        }
        return sum;
    }

    @Override
    public void dequantize(final int row, final int col0, final int n, final float[] dst, final int dstOffset)
    {
        final int blocks = n / BLOCK;
        long off = row * rowBytes + (long)(col0 / BLOCK) * BYTES;
        for (int b = 0; b < blocks; b++, off += BYTES)
        {
            final float d = f16(data, off);
            final int o = dstOffset + b * BLOCK;
            if (VECTOR_OK)
            {
                for (int p = 0; p < PARTS_32; p++)
                {
                    ((FloatVector)ByteVector.fromMemorySegment(BQ, data, off + 2 + p * LANES, ByteOrder.LITTLE_ENDIAN)
                        .convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(dst, o + p * LANES);
                }
            }
            else
            {
                for (int j = 0; j < BLOCK; j++)
                {
                    dst[o + j] = d * data.get(ValueLayout.JAVA_BYTE, off + 2 + j);
                }
            }
        }
    }
}
