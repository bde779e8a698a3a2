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
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Q4_0: blocks of 32 weights, an f16 scale {@code d} then 16 bytes of nibbles. Weight {@code j < 16} is the low
 * nibble of byte {@code j}, weight {@code j + 16} its high nibble; {@code w = d * (nibble - 8)}.
 * <pre>
 *  0      2                  18
 *  +------+------------------+
 *  | d f16| qs[0..15]        |   qs[j] = (q[j+16] << 4) | q[j]
 *  +------+------------------+
 * </pre>
 */
final class Q4_0Tensor extends WeightTensor
{
    static final int BLOCK = 32;
    static final int BYTES = 18;
    private static final int PARTS_16 = 16 / Math.max(1, LANES);

    Q4_0Tensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.Q4_0, data, rows, cols);
    }

    @Override
    public float dot(final int row, final float[] x, final int xOffset)
    {
        return VECTOR_OK && PARTS_16 >= 1 ? dotVector(row, x, xOffset) : dotScalar(row, x, xOffset);
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

    /**
     * Unscaled products of one block's 32 weights with x. At 256 bits the nibble bytes are loaded 8 at a time, each
     * load widening to one float vector: converting part 1 of a 16-byte vector is not compiled to vector code
     * there (1.1B Q4_0 decode with -XX:MaxVectorSize=32: 5-7 tok/s that way, 18-21 this way). At 512 bits one
     * load is one part.
     */
    private FloatVector block(final long off, final float[] x, final int xi)
    {
        if (PARTS_16 == 1)
        {
            final ByteVector q = ByteVector.fromMemorySegment(BQ, data, off + 2, ByteOrder.LITTLE_ENDIAN);
            final ByteVector lo = q.and((byte)0x0F).sub((byte)8);
            final ByteVector hi = Vectors.shiftRightBytes(q, 4).and((byte)0x0F).sub((byte)8);
            final FloatVector s = ((FloatVector)lo.convertShape(VectorOperators.B2F, F, 0))
                .mul(FloatVector.fromArray(F, x, xi));
            return ((FloatVector)hi.convertShape(VectorOperators.B2F, F, 0)).fma(FloatVector.fromArray(F, x, xi + 16), s);
        }
        FloatVector s = FloatVector.zero(F);
        for (int p = 0; p < PARTS_16; p++)
        {
            final ByteVector q = ByteVector.fromMemorySegment(BQ, data, off + 2 + p * LANES, ByteOrder.LITTLE_ENDIAN);
            final ByteVector lo = q.and((byte)0x0F).sub((byte)8);
            final ByteVector hi = Vectors.shiftRightBytes(q, 4).and((byte)0x0F).sub((byte)8);
            s = ((FloatVector)lo.convertShape(VectorOperators.B2F, F, 0))
                .fma(FloatVector.fromArray(F, x, xi + p * LANES), s);
            s = ((FloatVector)hi.convertShape(VectorOperators.B2F, F, 0))
                .fma(FloatVector.fromArray(F, x, xi + 16 + p * LANES), s);
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
            final int xi = xOffset + b * BLOCK;
            for (int j = 0; j < 16; j++)
            {
                final int q = data.get(ValueLayout.JAVA_BYTE, off + 2 + j) & 0xFF;
                s += ((q & 0x0F) - 8) * x[xi + j] + ((q >>> 4) - 8) * x[xi + j + 16];
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
            if (VECTOR_OK && PARTS_16 >= 1)
            {
                for (int p = 0; p < PARTS_16; p++)
                {
                    final ByteVector q = ByteVector.fromMemorySegment(BQ, data, off + 2 + p * LANES,
                        ByteOrder.LITTLE_ENDIAN);
                    final ByteVector lo = q.and((byte)0x0F).sub((byte)8);
                    final ByteVector hi = Vectors.shiftRightBytes(q, 4).and((byte)0x0F).sub((byte)8);
                    ((FloatVector)lo.convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(dst, o + p * LANES);
                    ((FloatVector)hi.convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(dst, o + 16 + p * LANES);
                }
            }
            else
            {
                for (int j = 0; j < 16; j++)
                {
                    final int q = data.get(ValueLayout.JAVA_BYTE, off + 2 + j) & 0xFF;
                    dst[o + j] = d * ((q & 0x0F) - 8);
                    dst[o + j + 16] = d * ((q >>> 4) - 8);
                }
            }
        }
    }
}
