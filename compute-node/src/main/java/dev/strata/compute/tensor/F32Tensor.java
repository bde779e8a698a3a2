package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/** 32-bit float weights. */
final class F32Tensor extends WeightTensor
{
    F32Tensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.F32, data, rows, cols);
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
                acc0 = FloatVector.fromMemorySegment(F, data, base + 4L * i, ByteOrder.LITTLE_ENDIAN)
                    .fma(FloatVector.fromArray(F, x, xOffset + i), acc0);
                acc1 = FloatVector.fromMemorySegment(F, data, base + 4L * (i + LANES), ByteOrder.LITTLE_ENDIAN)
                    .fma(FloatVector.fromArray(F, x, xOffset + i + LANES), acc1);
            }
            for (; i < upper; i += LANES)
            {
                acc0 = FloatVector.fromMemorySegment(F, data, base + 4L * i, ByteOrder.LITTLE_ENDIAN)
                    .fma(FloatVector.fromArray(F, x, xOffset + i), acc0);
            }
            sum = Lanes.sum(acc0.add(acc1));
        }
        for (; i < cols; i++)
        {
            sum += data.get(FLOAT_LE, base + 4L * i) * x[xOffset + i];
        }
        return sum;
    }

    @Override
    public void dequantize(final int row, final int col0, final int n, final float[] dst, final int dstOffset)
    {
        MemorySegment.copy(data, FLOAT_LE, row * rowBytes + 4L * col0, dst, dstOffset, n);
    }
}
