package dev.strata.compute.tensor;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static dev.strata.compute.tensor.Vectors.BQ;
import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.S;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Runs of little-endian values in native memory to and from {@code float[]}: IEEE half floats (the KV cache's
 * F16 storage), plain floats, and int8 times a scale (its 8-bit storage). The half-to-float conversion is the vector
 * one of {@link F16Tensor} (finite values only, which keys and values of a forward pass are).
 */
public final class HalfFloats
{
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private HalfFloats()
    {
    }

    /** {@code dst[dstOffset + i] = half(src at offset + 2i)} for {@code i < n}. */
    public static void toFloats(final MemorySegment src, final long offset, final float[] dst, final int dstOffset,
        final int n)
    {
        int i = 0;
        if (VECTOR_OK)
        {
            for (; i + LANES <= n; i += LANES)
            {
                Vectors.halfToFloat(ShortVector.fromMemorySegment(S, src, offset + 2L * i, ByteOrder.LITTLE_ENDIAN))
                    .intoArray(dst, dstOffset + i);
            }
        }
        for (; i < n; i++)
        {
            dst[dstOffset + i] = Float.float16ToFloat(src.get(HALF, offset + 2L * i));
        }
    }

    /**
     * {@code dst[dstOffset + i] = (float)(int8 at offset + i) * scale} for {@code i < n}: the same one rounding in
     * vector lanes as in the scalar tail.
     */
    public static void bytesToFloats(final MemorySegment src, final long offset, final float scale, final float[] dst,
        final int dstOffset, final int n)
    {
        int i = 0;
        if (VECTOR_OK)
        {
            final FloatVector d = FloatVector.broadcast(F, scale);
            for (; i + LANES <= n; i += LANES)
            {
                ((FloatVector)ByteVector.fromMemorySegment(BQ, src, offset + i, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(dst, dstOffset + i);
            }
        }
        for (; i < n; i++)
        {
            dst[dstOffset + i] = src.get(ValueLayout.JAVA_BYTE, offset + i) * scale;
        }
    }

    /** Writes {@code src[srcOffset .. srcOffset + n)} as halves (round to nearest even) at {@code offset}. */
    public static void fromFloats(final float[] src, final int srcOffset, final MemorySegment dst, final long offset,
        final int n)
    {
        for (int i = 0; i < n; i++)
        {
            dst.set(HALF, offset + 2L * i, Float.floatToFloat16(src[srcOffset + i]));
        }
    }

    /** Copies {@code n} little-endian floats at {@code offset} into {@code dst}. */
    public static void copyFloats(final MemorySegment src, final long offset, final float[] dst, final int dstOffset,
        final int n)
    {
        MemorySegment.copy(src, FLOAT, offset, dst, dstOffset, n);
    }

    /** Writes {@code n} floats of {@code src} little-endian at {@code offset}. */
    public static void storeFloats(final float[] src, final int srcOffset, final MemorySegment dst, final long offset,
        final int n)
    {
        MemorySegment.copy(src, srcOffset, dst, FLOAT, offset, n);
    }
}
