package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Float to stored-layout conversion for the types {@code strata synth} writes: F32, F16, BF16, Q8_0 and Q4_0,
 * following the rounding of ggml's reference quantizers so that files load and behave the same in llama.cpp.
 */
public final class Quantizer
{
    private Quantizer()
    {
    }

    /** Whether {@link #quantize} can produce {@code type}. */
    public static boolean canWrite(final GgmlType type)
    {
        return switch (type)
        {
            case F32, F16, BF16, Q8_0, Q4_0 -> true;
            default -> false;
        };
    }

    /**
     * Appends {@code n} values of {@code src} from {@code offset}, converted to {@code type}, to {@code out}
     * (which must be little-endian and have room). {@code n} must be a multiple of the type's block size.
     */
    public static void quantize(final GgmlType type, final float[] src, final int offset, final int n,
        final ByteBuffer out)
    {
        if (out.order() != ByteOrder.LITTLE_ENDIAN)
        {
            throw new IllegalArgumentException("output buffer must be little-endian");
        }
        switch (type)
        {
            case F32 ->
            {
                for (int i = 0; i < n; i++)
                {
                    out.putFloat(src[offset + i]);
                }
            }
            case F16 ->
            {
                for (int i = 0; i < n; i++)
                {
                    out.putShort(Float.floatToFloat16(src[offset + i]));
                }
            }
            case BF16 ->
            {
                for (int i = 0; i < n; i++)
                {
                    out.putShort(toBf16(src[offset + i]));
                }
            }
            case Q8_0 -> quantizeQ8_0(src, offset, n, out);
            case Q4_0 -> quantizeQ4_0(src, offset, n, out);
            default -> throw new UnsupportedTensorTypeException("cannot quantize to " + type);
        }
    }

    /** Round-to-nearest-even bfloat16, as ggml does (NaN kept quiet). */
    static short toBf16(final float f)
    {
        final int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000)
        {
            return (short)((bits >>> 16) | 64);
        }
        return (short)((bits + (0x7fff + ((bits >>> 16) & 1))) >>> 16);
    }

    private static void quantizeQ8_0(final float[] src, final int offset, final int n, final ByteBuffer out)
    {
        for (int b = 0; b < n; b += 32)
        {
            float amax = 0f;
            for (int j = 0; j < 32; j++)
            {
                amax = Math.max(amax, Math.abs(src[offset + b + j]));
            }
            final float d = amax / 127f;
            final float id = d != 0f ? 1f / d : 0f;
            out.putShort(Float.floatToFloat16(d));
            for (int j = 0; j < 32; j++)
            {
                // C roundf: half-way cases away from zero (Math.round would take -2.5 to -2, ggml to -3)
                final float v = src[offset + b + j] * id;
                out.put((byte)(v < 0f ? -Math.round(-v) : Math.round(v)));
            }
        }
    }

    private static void quantizeQ4_0(final float[] src, final int offset, final int n, final ByteBuffer out)
    {
        for (int b = 0; b < n; b += 32)
        {
            float amax = 0f;
            float max = 0f;
            for (int j = 0; j < 32; j++)
            {
                final float v = src[offset + b + j];
                if (Math.abs(v) > amax)
                {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            final float d = max / -8f;
            final float id = d != 0f ? 1f / d : 0f;
            out.putShort(Float.floatToFloat16(d));
            for (int j = 0; j < 16; j++)
            {
                final int q0 = Math.min(15, (int)(src[offset + b + j] * id + 8.5f));
                final int q1 = Math.min(15, (int)(src[offset + b + j + 16] * id + 8.5f));
                out.put((byte)(q0 | (q1 << 4)));
            }
        }
    }
}
