package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import static dev.strata.compute.tensor.ScalarReference.Q4_0_BYTES;
import static dev.strata.compute.tensor.ScalarReference.Q4_K_BYTES;
import static dev.strata.compute.tensor.ScalarReference.Q6_K_BYTES;
import static dev.strata.compute.tensor.ScalarReference.Q8_0_BYTES;
import static dev.strata.compute.tensor.ScalarReference.QK8_0;
import static dev.strata.compute.tensor.ScalarReference.QK_K;
import static dev.strata.compute.tensor.ScalarReference.half;
import static dev.strata.compute.tensor.ScalarReference.scaleMinK4;
import static dev.strata.compute.tensor.ScalarReference.u16;
import static dev.strata.compute.tensor.ScalarReference.u8;

/**
 * Scalar Java references of the native kernels' definitions (ggml's): activation quantization to Q8_0 and Q8_K, and
 * the integer dot products of each weight type with them. Each dot returns the float value (per-block integer sums
 * times the block scales, summed in double) and, through {@link Dot#integerSums}, the exact integer sums.
 */
final class NativeReference
{
    /** Quantized activations in the layout of {@link NativeKernels.Activations}, for one token. */
    record Q8(byte[] qs, float[] d, int[] aux)
    {
    }

    /**
     * A dot product's value, and the sum of the magnitudes of its products (each weight times activation, with the
     * scales): kernels add partial sums in float in different orders, so their rounding error is bounded relative to
     * this, not to the value.
     */
    record Dot(double value, double sumOfMagnitudes)
    {
    }

    private NativeReference()
    {
    }

    /** quantize_row_q8_0_ref, with the groups-of-4 sums times -bias. */
    static Q8 quantizeQ8_0(final float[] x, final int offset, final int n, final int bias)
    {
        final byte[] blocks = ScalarReference.quantizeQ8_0(x, offset, n);
        final int nb = n / QK8_0;
        final byte[] qs = new byte[n];
        final float[] d = new float[nb];
        final int[] aux = new int[n / 4];
        for (int b = 0; b < nb; b++)
        {
            d[b] = half(u16(blocks, b * Q8_0_BYTES));
            System.arraycopy(blocks, b * Q8_0_BYTES + 2, qs, b * QK8_0, QK8_0);
        }
        for (int g = 0; g < n / 4; g++)
        {
            aux[g] = -bias * (qs[4 * g] + qs[4 * g + 1] + qs[4 * g + 2] + qs[4 * g + 3]);
        }
        return new Q8(qs, d, aux);
    }

    /** quantize_row_q8_K_ref (nearest_int is round half to even), with the bsums of each 16 values. */
    static Q8 quantizeQ8_K(final float[] x, final int offset, final int n)
    {
        final int nb = n / QK_K;
        final byte[] qs = new byte[n];
        final float[] d = new float[nb];
        final int[] bsums = new int[n / 16];
        for (int b = 0; b < nb; b++)
        {
            float amax = 0f;
            float max = 0f;
            for (int j = 0; j < QK_K; j++)
            {
                final float ax = Math.abs(x[offset + b * QK_K + j]);
                if (ax > amax)
                {
                    amax = ax;
                    max = x[offset + b * QK_K + j];
                }
            }
            if (amax == 0f)
            {
                continue;
            }
            final float iscale = -127f / max;
            for (int j = 0; j < QK_K; j++)
            {
                final int v = (int)Math.rint(iscale * x[offset + b * QK_K + j]);
                qs[b * QK_K + j] = (byte)Math.min(127, v);
            }
            for (int g = 0; g < QK_K / 16; g++)
            {
                int s = 0;
                for (int j = 0; j < 16; j++)
                {
                    s += qs[b * QK_K + g * 16 + j];
                }
                bsums[b * 16 + g] = s;
            }
            d[b] = 1f / iscale;
        }
        return new Q8(qs, d, bsums);
    }

    static Q8 quantize(final GgmlType type, final float[] x, final int offset, final int n)
    {
        return switch (type)
        {
            case Q4_0 -> quantizeQ8_0(x, offset, n, 8);
            case Q8_0 -> quantizeQ8_0(x, offset, n, 128);
            default -> quantizeQ8_K(x, offset, n);
        };
    }

    /** The dot product of the row at {@code w[base ..]} ({@code cols} weights of {@code type}) with {@code a}. */
    static Dot dot(final GgmlType type, final byte[] w, final int base, final int cols, final Q8 a)
    {
        double value = 0;
        double magnitude = 0;
        switch (type)
        {
            case Q4_0 ->
            {
                for (int b = 0; b < cols / QK8_0; b++)
                {
                    final int o = base + b * Q4_0_BYTES;
                    long sumi = 0;
                    long abs = 0;
                    for (int j = 0; j < 16; j++)
                    {
                        final int p0 = ((u8(w, o + 2 + j) & 0xF) - 8) * a.qs[b * QK8_0 + j];
                        final int p1 = ((u8(w, o + 2 + j) >> 4) - 8) * a.qs[b * QK8_0 + j + 16];
                        sumi += p0 + p1;
                        abs += Math.abs(p0) + Math.abs(p1);
                    }
                    final double scale = half(u16(w, o)) * a.d[b];
                    value += sumi * scale;
                    magnitude += abs * Math.abs(scale);
                }
            }
            case Q8_0 ->
            {
                for (int b = 0; b < cols / QK8_0; b++)
                {
                    final int o = base + b * Q8_0_BYTES;
                    long sumi = 0;
                    long abs = 0;
                    for (int j = 0; j < QK8_0; j++)
                    {
                        final int p = w[o + 2 + j] * a.qs[b * QK8_0 + j];
                        sumi += p;
                        abs += Math.abs(p);
                    }
                    final double scale = half(u16(w, o)) * a.d[b];
                    value += sumi * scale;
                    magnitude += abs * Math.abs(scale);
                }
            }
            case Q4_K ->
            {
                for (int b = 0; b < cols / QK_K; b++)
                {
                    final int o = base + b * Q4_K_BYTES;
                    final float d = half(u16(w, o)) * a.d[b];
                    final float dmin = half(u16(w, o + 2)) * a.d[b];
                    long sumi = 0;
                    long summ = 0;
                    long abs = 0;
                    long absm = 0;
                    for (int j = 0; j < 8; j++)
                    {
                        final int[] sm = scaleMinK4(j, w, o + 4);
                        long s = 0;
                        for (int l = 0; l < 32; l++)
                        {
                            final int byteValue = u8(w, o + 16 + (j / 2) * 32 + l);
                            final int q = (j & 1) == 0 ? byteValue & 0xF : byteValue >> 4;
                            s += q * a.qs[b * QK_K + j * 32 + l];
                            abs += (long)sm[0] * Math.abs(q * a.qs[b * QK_K + j * 32 + l]);
                        }
                        sumi += sm[0] * s;
                        summ += sm[1] * (long)(a.aux[b * 16 + 2 * j] + a.aux[b * 16 + 2 * j + 1]);
                        absm += sm[1] * (long)(Math.abs(a.aux[b * 16 + 2 * j]) + Math.abs(a.aux[b * 16 + 2 * j + 1]));
                    }
                    value += (double)d * sumi - (double)dmin * summ;
                    magnitude += Math.abs((double)d) * abs + Math.abs((double)dmin) * absm;
                }
            }
            case Q6_K ->
            {
                for (int b = 0; b < cols / QK_K; b++)
                {
                    final int o = base + b * Q6_K_BYTES;
                    final float d = half(u16(w, o + 208)) * a.d[b];
                    long sumi = 0;
                    long abs = 0;
                    for (int e = 0; e < QK_K; e++)
                    {
                        final int half128 = e / 128;
                        final int r = e % 128;
                        final int l = r % 32;
                        final int quarter = r / 32;
                        final int ql = u8(w, o + half128 * 64 + l + (quarter % 2) * 32);
                        final int low = quarter < 2 ? ql & 0xF : ql >> 4;
                        final int high = (u8(w, o + 128 + half128 * 32 + l) >> (2 * quarter)) & 3;
                        final int q = (low | (high << 4)) - 32;
                        final long p = (long)w[o + 192 + e / 16] * q * a.qs[b * QK_K + e];
                        sumi += p;
                        abs += Math.abs(p);
                    }
                    value += (double)d * sumi;
                    magnitude += Math.abs((double)d) * abs;
                }
            }
            default -> throw new IllegalArgumentException("no integer kernel for " + type);
        }
        return new Dot(value, magnitude);
    }
}
