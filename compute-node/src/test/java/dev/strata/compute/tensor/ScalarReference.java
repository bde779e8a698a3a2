package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

/**
 * Scalar reference (de)quantizers written from ggml's {@code ggml-quants.c} ({@code dequantize_row_*},
 * {@code quantize_row_q4_0_ref}, {@code quantize_row_q8_0_ref}) and the block layouts of {@code ggml-common.h},
 * independent of the Strata kernels. They work on plain byte arrays holding whole rows.
 */
final class ScalarReference
{
    static final int QK4_0 = 32;
    static final int QK8_0 = 32;
    static final int QK_K = 256;
    static final int Q4_0_BYTES = 2 + QK4_0 / 2;
    static final int Q8_0_BYTES = 2 + QK8_0;
    static final int Q4_K_BYTES = 2 + 2 + 12 + QK_K / 2;
    static final int Q6_K_BYTES = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

    private ScalarReference()
    {
    }

    static int u8(final byte[] b, final int o)
    {
        return b[o] & 0xFF;
    }

    static int u16(final byte[] b, final int o)
    {
        return (b[o] & 0xFF) | ((b[o + 1] & 0xFF) << 8);
    }

    static void putU16(final byte[] b, final int o, final int v)
    {
        b[o] = (byte)v;
        b[o + 1] = (byte)(v >>> 8);
    }

    /** IEEE binary16 to binary32 from the bit fields (ggml_compute_fp16_to_fp32 semantics). */
    static float half(final int bits)
    {
        final int sign = (bits >>> 15) & 1;
        final int exponent = (bits >>> 10) & 0x1F;
        final int mantissa = bits & 0x3FF;
        final float magnitude;
        if (exponent == 0)
        {
            magnitude = Math.scalb((float)mantissa, -24);
        }
        else if (exponent == 31)
        {
            magnitude = mantissa == 0 ? Float.POSITIVE_INFINITY : Float.NaN;
        }
        else
        {
            magnitude = Math.scalb((float)(mantissa | 0x400), exponent - 25);
        }
        return sign == 0 ? magnitude : -magnitude;
    }

    static float bf16(final int bits)
    {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** Row bytes for {@code cols} elements of {@code type}. */
    static int rowBytes(final GgmlType type, final int cols)
    {
        return switch (type)
        {
            case F32 -> 4 * cols;
            case F16, BF16 -> 2 * cols;
            case Q8_0 -> cols / QK8_0 * Q8_0_BYTES;
            case Q4_0 -> cols / QK4_0 * Q4_0_BYTES;
            case Q4_K -> cols / QK_K * Q4_K_BYTES;
            case Q6_K -> cols / QK_K * Q6_K_BYTES;
            default -> throw new IllegalArgumentException("no reference for " + type);
        };
    }

    /** Dequantizes one row of {@code cols} elements stored at {@code x[base ..]}. */
    static float[] dequantizeRow(final GgmlType type, final byte[] x, final int base, final int cols)
    {
        final float[] y = new float[cols];
        switch (type)
        {
            case F32 ->
            {
                for (int i = 0; i < cols; i++)
                {
                    final int o = base + 4 * i;
                    y[i] = Float.intBitsToFloat(u16(x, o) | (u16(x, o + 2) << 16));
                }
            }
            case F16 ->
            {
                for (int i = 0; i < cols; i++)
                {
                    y[i] = half(u16(x, base + 2 * i));
                }
            }
            case BF16 ->
            {
                for (int i = 0; i < cols; i++)
                {
                    y[i] = bf16(u16(x, base + 2 * i));
                }
            }
            case Q8_0 -> dequantizeQ8_0(x, base, y);
            case Q4_0 -> dequantizeQ4_0(x, base, y);
            case Q4_K -> dequantizeQ4_K(x, base, y);
            case Q6_K -> dequantizeQ6_K(x, base, y);
            default -> throw new IllegalArgumentException("no reference for " + type);
        }
        return y;
    }

    /** dequantize_row_q8_0: {@code y = qs[j] * d}. */
    static void dequantizeQ8_0(final byte[] x, final int base, final float[] y)
    {
        final int nb = y.length / QK8_0;
        for (int i = 0; i < nb; i++)
        {
            final int b = base + i * Q8_0_BYTES;
            final float d = half(u16(x, b));
            for (int j = 0; j < QK8_0; j++)
            {
                y[i * QK8_0 + j] = x[b + 2 + j] * d;
            }
        }
    }

    /** dequantize_row_q4_0: low nibbles are elements 0..15, high nibbles 16..31, both offset by 8. */
    static void dequantizeQ4_0(final byte[] x, final int base, final float[] y)
    {
        final int nb = y.length / QK4_0;
        for (int i = 0; i < nb; i++)
        {
            final int b = base + i * Q4_0_BYTES;
            final float d = half(u16(x, b));
            for (int j = 0; j < QK4_0 / 2; j++)
            {
                final int x0 = (u8(x, b + 2 + j) & 0x0F) - 8;
                final int x1 = (u8(x, b + 2 + j) >> 4) - 8;
                y[i * QK4_0 + j] = x0 * d;
                y[i * QK4_0 + j + QK4_0 / 2] = x1 * d;
            }
        }
    }

    /** get_scale_min_k4: returns {scale, min} of sub-block j from the 12 scale bytes at {@code q[o ..]}. */
    static int[] scaleMinK4(final int j, final byte[] q, final int o)
    {
        if (j < 4)
        {
            return new int[]{u8(q, o + j) & 63, u8(q, o + j + 4) & 63};
        }
        final int d = (u8(q, o + j + 4) & 0xF) | ((u8(q, o + j - 4) >> 6) << 4);
        final int m = (u8(q, o + j + 4) >> 4) | ((u8(q, o + j) >> 6) << 4);
        return new int[]{d, m};
    }

    /** dequantize_row_q4_K: block_q4_K = {d, dmin, scales[12], qs[128]}. */
    static void dequantizeQ4_K(final byte[] x, final int base, final float[] y)
    {
        final int nb = y.length / QK_K;
        int yi = 0;
        for (int i = 0; i < nb; i++)
        {
            final int b = base + i * Q4_K_BYTES;
            final float d = half(u16(x, b));
            final float min = half(u16(x, b + 2));
            final int scales = b + 4;
            int q = b + 16;
            int is = 0;
            for (int j = 0; j < QK_K; j += 64)
            {
                final int[] sm1 = scaleMinK4(is, x, scales);
                final float d1 = d * sm1[0];
                final float m1 = min * sm1[1];
                final int[] sm2 = scaleMinK4(is + 1, x, scales);
                final float d2 = d * sm2[0];
                final float m2 = min * sm2[1];
                for (int l = 0; l < 32; l++)
                {
                    y[yi++] = d1 * (u8(x, q + l) & 0xF) - m1;
                }
                for (int l = 0; l < 32; l++)
                {
                    y[yi++] = d2 * (u8(x, q + l) >> 4) - m2;
                }
                q += 32;
                is += 2;
            }
        }
    }

    /** dequantize_row_q6_K: block_q6_K = {ql[128], qh[64], scales[16] (int8), d}. */
    static void dequantizeQ6_K(final byte[] x, final int base, final float[] y)
    {
        final int nb = y.length / QK_K;
        for (int i = 0; i < nb; i++)
        {
            final int b = base + i * Q6_K_BYTES;
            final float d = half(u16(x, b + 208));
            int ql = b;
            int qh = b + 128;
            int sc = b + 192;
            int yi = i * QK_K;
            for (int n = 0; n < QK_K; n += 128)
            {
                for (int l = 0; l < 32; l++)
                {
                    final int is = l / 16;
                    final int q1 = (byte)((u8(x, ql + l) & 0xF) | (((u8(x, qh + l) >> 0) & 3) << 4)) - 32;
                    final int q2 = (byte)((u8(x, ql + l + 32) & 0xF) | (((u8(x, qh + l) >> 2) & 3) << 4)) - 32;
                    final int q3 = (byte)((u8(x, ql + l) >> 4) | (((u8(x, qh + l) >> 4) & 3) << 4)) - 32;
                    final int q4 = (byte)((u8(x, ql + l + 32) >> 4) | (((u8(x, qh + l) >> 6) & 3) << 4)) - 32;
                    y[yi + l] = d * x[sc + is] * q1;
                    y[yi + l + 32] = d * x[sc + is + 2] * q2;
                    y[yi + l + 64] = d * x[sc + is + 4] * q3;
                    y[yi + l + 96] = d * x[sc + is + 6] * q4;
                }
                yi += 128;
                ql += 64;
                qh += 32;
                sc += 8;
            }
        }
    }

    /** C's roundf: half-way cases away from zero. */
    static float roundf(final float v)
    {
        final double r = Math.floor(Math.abs((double)v) + 0.5);
        return (float)(v < 0 ? -r : r);
    }

    /** quantize_row_q8_0_ref. */
    static byte[] quantizeQ8_0(final float[] x, final int offset, final int k)
    {
        final int nb = k / QK8_0;
        final byte[] y = new byte[nb * Q8_0_BYTES];
        for (int i = 0; i < nb; i++)
        {
            float amax = 0.0f;
            for (int j = 0; j < QK8_0; j++)
            {
                final float v = x[offset + i * QK8_0 + j];
                amax = amax > Math.abs(v) ? amax : Math.abs(v);
            }
            final float d = amax / ((1 << 7) - 1);
            final float id = d != 0f ? 1.0f / d : 0.0f;
            putU16(y, i * Q8_0_BYTES, Float.floatToFloat16(d));
            for (int j = 0; j < QK8_0; j++)
            {
                final float x0 = x[offset + i * QK8_0 + j] * id;
                y[i * Q8_0_BYTES + 2 + j] = (byte)(int)roundf(x0);
            }
        }
        return y;
    }

    /** quantize_row_q4_0_ref. */
    static byte[] quantizeQ4_0(final float[] x, final int offset, final int k)
    {
        final int qk = QK4_0;
        final int nb = k / qk;
        final byte[] y = new byte[nb * Q4_0_BYTES];
        for (int i = 0; i < nb; i++)
        {
            float amax = 0.0f;
            float max = 0.0f;
            for (int j = 0; j < qk; j++)
            {
                final float v = x[offset + i * qk + j];
                if (amax < Math.abs(v))
                {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            final float d = max / -8;
            final float id = d != 0f ? 1.0f / d : 0.0f;
            putU16(y, i * Q4_0_BYTES, Float.floatToFloat16(d));
            for (int j = 0; j < qk / 2; j++)
            {
                final float x0 = x[offset + i * qk + j] * id;
                final float x1 = x[offset + i * qk + qk / 2 + j] * id;
                final int xi0 = Math.min(15, (byte)(int)(x0 + 8.5f));
                final int xi1 = Math.min(15, (byte)(int)(x1 + 8.5f));
                y[i * Q4_0_BYTES + 2 + j] = (byte)(xi0 | (xi1 << 4));
            }
        }
        return y;
    }

    /** ggml_compute_fp32_to_bf16, written as round-half-to-even on the dropped 16 bits. */
    static short bf16RoundNearestEven(final float f)
    {
        final int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f))
        {
            return (short)((bits >>> 16) | 0x40);
        }
        final int upper = bits >>> 16;
        final int dropped = bits & 0xFFFF;
        final boolean up = dropped > 0x8000 || (dropped == 0x8000 && (upper & 1) == 1);
        return (short)(up ? upper + 1 : upper);
    }
}
