package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.strata.compute.tensor.Vectors.B256;
import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.PARTS_32;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32, each sub-block with a 6-bit scale and a 6-bit min;
 * {@code w = d * sc * q - dmin * m} with 4-bit {@code q}.
 * <pre>
 *  0       2        4              16                               144
 *  +-------+--------+--------------+--------------------------------+
 *  | d f16 |dmin f16| scales[12]   | qs[128]: 4 groups of 32 bytes  |
 *  +-------+--------+--------------+--------------------------------+
 * </pre>
 * Group {@code g} of {@code qs} holds sub-block {@code 2g} in its low nibbles and {@code 2g+1} in its high
 * nibbles. The 12 scale bytes pack 8 (scale, min) pairs of 6 bits: pairs 0..3 in the low 6 bits of bytes 0..3
 * and 4..7; pairs 4..7 in the nibbles of bytes 8..11 with their top 2 bits in the top bits of bytes 0..7.
 */
final class Q4_KTensor extends WeightTensor
{
    static final int BLOCK = 256;
    static final int BYTES = 144;

    Q4_KTensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.Q4_K, data, rows, cols);
    }

    /**
     * Scale (or {@code min}) of sub-block {@code j}, unpacked from the 12 scale bytes, read as a long (bytes 0-7)
     * and an int (bytes 8-11).
     */
    static int scaleOrMin(final long s0, final int s1, final int j, final boolean min)
    {
        if (j < 4)
        {
            return byteOf(s0, s1, min ? j + 4 : j) & 63;
        }
        return min ?
            (byteOf(s0, s1, j + 4) >>> 4) | ((byteOf(s0, s1, j) >>> 6) << 4) :
            (byteOf(s0, s1, j + 4) & 0xF) | ((byteOf(s0, s1, j - 4) >>> 6) << 4);
    }

    private static int byteOf(final long s0, final int s1, final int k)
    {
        return k < 8 ? (int)(s0 >>> (8 * k)) & 0xFF : (s1 >>> (8 * (k - 8))) & 0xFF;
    }

    private static int u8(final MemorySegment s, final long off)
    {
        return s.get(ValueLayout.JAVA_BYTE, off) & 0xFF;
    }

    @Override
    public float dot(final int row, final float[] x, final int xOffset)
    {
        final int blocks = cols / BLOCK;
        long off = row * rowBytes;
        if (!VECTOR_OK)
        {
            return dotByDequantizing(row, x, xOffset);
        }
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = FloatVector.zero(F);
        for (int b = 0; b < blocks; b++, off += BYTES)
        {
            final float d = f16(data, off);
            final float dmin = f16(data, off + 2);
            // the 12 scale bytes in two reads, unpacked in registers: a read per scale cost more than the
            // vector work (6.6 Gweights/s per core that way)
            final long s0 = data.get(LONG_LE, off + 4);
            final int s1 = data.get(INT_LE, off + 12);
            final int xb = xOffset + b * BLOCK;
            for (int g = 0; g < 4; g++)
            {
                final ByteVector q = ByteVector.fromMemorySegment(B256, data, off + 16 + 32L * g, ByteOrder.LITTLE_ENDIAN);
                final ByteVector lo = q.and((byte)0x0F);
                final ByteVector hi = Vectors.shiftRightBytes(q, 4).and((byte)0x0F);
                final float d1 = d * scaleOrMin(s0, s1, 2 * g, false);
                final float m1 = -dmin * scaleOrMin(s0, s1, 2 * g, true);
                final float d2 = d * scaleOrMin(s0, s1, 2 * g + 1, false);
                final float m2 = -dmin * scaleOrMin(s0, s1, 2 * g + 1, true);
                final int x1 = xb + 64 * g;
                for (int p = 0; p < PARTS_32; p++)
                {
                    final FloatVector w1 = ((FloatVector)lo.convertShape(VectorOperators.B2F, F, p)).fma(d1, m1);
                    acc0 = w1.fma(FloatVector.fromArray(F, x, x1 + p * LANES), acc0);
                    final FloatVector w2 = ((FloatVector)hi.convertShape(VectorOperators.B2F, F, p)).fma(d2, m2);
                    acc1 = w2.fma(FloatVector.fromArray(F, x, x1 + 32 + p * LANES), acc1);
                }
            }
        }
        return Lanes.sum(acc0.add(acc1));
    }

    @Override
    public void dequantize(final int row, final int col0, final int n, final float[] dst, final int dstOffset)
    {
        final int blocks = n / BLOCK;
        long off = row * rowBytes + (long)(col0 / BLOCK) * BYTES;
        for (int b = 0; b < blocks; b++, off += BYTES)
        {
            dequantizeBlock(off, dst, dstOffset + b * BLOCK);
        }
    }

    private void dequantizeBlock(final long off, final float[] dst, final int o)
    {
        final float d = f16(data, off);
        final float dmin = f16(data, off + 2);
        final long s0 = data.get(LONG_LE, off + 4);
        final int s1 = data.get(INT_LE, off + 12);
        for (int g = 0; g < 4; g++)
        {
            final float d1 = d * scaleOrMin(s0, s1, 2 * g, false);
            final float m1 = dmin * scaleOrMin(s0, s1, 2 * g, true);
            final float d2 = d * scaleOrMin(s0, s1, 2 * g + 1, false);
            final float m2 = dmin * scaleOrMin(s0, s1, 2 * g + 1, true);
            final long qs = off + 16 + 32L * g;
            final int y = o + 64 * g;
            if (VECTOR_OK)
            {
                final ByteVector q = ByteVector.fromMemorySegment(B256, data, qs, ByteOrder.LITTLE_ENDIAN);
                final ByteVector lo = q.and((byte)0x0F);
                final ByteVector hi = Vectors.shiftRightBytes(q, 4).and((byte)0x0F);
                for (int p = 0; p < PARTS_32; p++)
                {
                    ((FloatVector)lo.convertShape(VectorOperators.B2F, F, p)).fma(d1, -m1).intoArray(dst, y + p * LANES);
                    ((FloatVector)hi.convertShape(VectorOperators.B2F, F, p)).fma(d2, -m2)
                        .intoArray(dst, y + 32 + p * LANES);
                }
            }
            else
            {
                for (int l = 0; l < 32; l++)
                {
                    final int q = u8(data, qs + l);
                    dst[y + l] = d1 * (q & 0xF) - m1;
                    dst[y + 32 + l] = d2 * (q >>> 4) - m2;
                }
            }
        }
    }
}
