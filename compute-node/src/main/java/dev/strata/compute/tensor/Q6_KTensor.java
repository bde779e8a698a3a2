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
 * Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16, each with a signed 8-bit scale;
 * {@code w = d * sc * (q - 32)} with 6-bit {@code q} split into 4 low bits ({@code ql}) and 2 high bits
 * ({@code qh}).
 * <pre>
 *  0                 128            192            208     210
 *  +-----------------+--------------+--------------+-------+
 *  | ql[128]         | qh[64]       | scales[16]   | d f16 |
 *  +-----------------+--------------+--------------+-------+
 * </pre>
 * Each half of 128 weights uses 64 bytes of {@code ql}, 32 of {@code qh} and 8 scales; see
 * {@link #dequantizeBlock} for which bits make which weight.
 */
final class Q6_KTensor extends WeightTensor
{
    static final int BLOCK = 256;
    static final int BYTES = 210;

    Q6_KTensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.Q6_K, data, rows, cols);
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
        float sum = 0f;
        for (int b = 0; b < blocks; b++, off += BYTES)
        {
            final float d = f16(data, off + 208);
            for (int h = 0; h < 2; h++)
            {
                // the half's 8 scales in one read (one scalar access instead of one per sub-block)
                final long scales = data.get(LONG_LE, off + 192 + 8L * h);
                final int y = xOffset + b * BLOCK + 128 * h;
                for (int p = 0; p < PARTS_32; p++)
                {
                    sum += part(off + 64L * h, off + 128 + 32L * h, p * LANES, scales, x, y, d);
                }
            }
        }
        return sum;
    }

    /**
     * The dot product of {@code 4 * LANES} weights of half a super-block (bytes {@code at ..} of its {@code ql} and
     * {@code qh}, four sub-blocks 32 weights apart) with x, reduced to a float. Kept this small for C2: a whole
     * super-block, or half of one, per method outgrew its inlining budget (NodeCountInliningCutoff) over a mapped
     * file's segment; vector loads and byte shifts were left as calls, every vector crossing them was boxed, and
     * Q6_K ran at 1.9 Gweights/s per core.
     */
    private float part(final long ql, final long qh, final int at, final long scales, final float[] x, final int y,
        final float d)
    {
        final ByteVector l0 = ByteVector.fromMemorySegment(BQ, data, ql + at, ByteOrder.LITTLE_ENDIAN);
        final ByteVector l1 = ByteVector.fromMemorySegment(BQ, data, ql + 32 + at, ByteOrder.LITTLE_ENDIAN);
        final ByteVector hb = ByteVector.fromMemorySegment(BQ, data, qh + at, ByteOrder.LITTLE_ENDIAN);
        // bits 4-5 of each 6-bit weight: 2 bits of qh moved into place and masked (bits a shift carries across a
        // byte boundary fall outside the mask)
        final ByteVector q1 = l0.and((byte)0x0F).or(Vectors.shiftLeftBytes(hb, 4).and((byte)0x30)).sub((byte)32);
        final ByteVector q2 = l1.and((byte)0x0F).or(Vectors.shiftLeftBytes(hb, 2).and((byte)0x30)).sub((byte)32);
        final ByteVector q3 = Vectors.shiftRightBytes(l0, 4).and((byte)0x0F).or(hb.and((byte)0x30)).sub((byte)32);
        final ByteVector q4 = Vectors.shiftRightBytes(l1, 4).and((byte)0x0F)
            .or(Vectors.shiftRightBytes(hb, 2).and((byte)0x30)).sub((byte)32);
        final int is = 8 * (at >>> 4);
        final int xi = y + at;
        FloatVector acc = ((FloatVector)q1.convertShape(VectorOperators.B2F, F, 0))
            .mul(d * (byte)(scales >>> is)).mul(FloatVector.fromArray(F, x, xi));
        acc = ((FloatVector)q2.convertShape(VectorOperators.B2F, F, 0)).mul(d * (byte)(scales >>> (is + 16)))
            .fma(FloatVector.fromArray(F, x, xi + 32), acc);
        acc = ((FloatVector)q3.convertShape(VectorOperators.B2F, F, 0)).mul(d * (byte)(scales >>> (is + 32)))
            .fma(FloatVector.fromArray(F, x, xi + 64), acc);
        acc = ((FloatVector)q4.convertShape(VectorOperators.B2F, F, 0)).mul(d * (byte)(scales >>> (is + 48)))
            .fma(FloatVector.fromArray(F, x, xi + 96), acc);
        return Lanes.sum(acc);
    }

    private float scale(final long sc, final int i)
    {
        return data.get(ValueLayout.JAVA_BYTE, sc + i);
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
        final float d = f16(data, off + 208);
        for (int h = 0; h < 2; h++)
        {
            final long ql = off + 64L * h;
            final long qh = off + 128 + 32L * h;
            final long sc = off + 192 + 8L * h;
            final int y = o + 128 * h;
            for (int l = 0; l < 32; l++)
            {
                final int is = l >>> 4;
                final int a = data.get(ValueLayout.JAVA_BYTE, ql + l) & 0xFF;
                final int c = data.get(ValueLayout.JAVA_BYTE, ql + l + 32) & 0xFF;
                final int hh = data.get(ValueLayout.JAVA_BYTE, qh + l) & 0xFF;
                dst[y + l] = d * scale(sc, is) * (((a & 0xF) | ((hh & 3) << 4)) - 32);
                dst[y + l + 32] = d * scale(sc, is + 2) * (((c & 0xF) | (((hh >>> 2) & 3) << 4)) - 32);
                dst[y + l + 64] = d * scale(sc, is + 4) * (((a >>> 4) | (((hh >>> 4) & 3) << 4)) - 32);
                dst[y + l + 96] = d * scale(sc, is + 6) * (((c >>> 4) | (((hh >>> 6) & 3) << 4)) - 32);
            }
        }
    }
}
