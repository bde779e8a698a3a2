package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.ShortVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.S;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/** BF16 weights, widened to float in registers. */
final class BF16Tensor extends WeightTensor
{
    BF16Tensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.BF16, data, rows, cols);
    }

    @Override
    public float dot(final int row, final float[] x, final int xOffset)
    {
        final long base = row * rowBytes;
        int i = 0;
        float sum = 0f;
        if (VECTOR_OK)
        {
            final int upper = F.loopBound(cols);
            FloatVector acc0 = FloatVector.zero(F);
            FloatVector acc1 = FloatVector.zero(F);
            for (; i + 2 * LANES <= upper; i += 2 * LANES)
            {
                acc0 = Vectors.bf16ToFloat(ShortVector.fromMemorySegment(S, data, base + 2L * i, ByteOrder.LITTLE_ENDIAN))
                    .fma(FloatVector.fromArray(F, x, xOffset + i), acc0);
                acc1 = Vectors.bf16ToFloat(ShortVector.fromMemorySegment(S, data, base + 2L * (i + LANES), ByteOrder.LITTLE_ENDIAN))
                    .fma(FloatVector.fromArray(F, x, xOffset + i + LANES), acc1);
            }
            for (; i < upper; i += LANES)
            {
                acc0 = Vectors.bf16ToFloat(ShortVector.fromMemorySegment(S, data, base + 2L * i, ByteOrder.LITTLE_ENDIAN))
                    .fma(FloatVector.fromArray(F, x, xOffset + i), acc0);
            }
            sum = Lanes.sum(acc0.add(acc1));
        }
        for (; i < cols; i++)
        {
            sum += Float.intBitsToFloat(data.get(SHORT_LE, base + 2L * i) << 16) * x[xOffset + i];
        }
        return sum;
    }

    @Override
    public void dequantize(final int row, final int col0, final int n, final float[] dst, final int dstOffset)
    {
        final long base = row * rowBytes + 2L * col0;
        int i = 0;
        if (VECTOR_OK)
        {
            final int upper = F.loopBound(n);
            for (; i < upper; i += LANES)
            {
                Vectors.bf16ToFloat(ShortVector.fromMemorySegment(S, data, base + 2L * i, ByteOrder.LITTLE_ENDIAN))
                    .intoArray(dst, dstOffset + i);
            }
        }
        for (; i < n; i++)
        {
            dst[dstOffset + i] = Float.intBitsToFloat(data.get(SHORT_LE, base + 2L * i) << 16);
        }
    }
}
