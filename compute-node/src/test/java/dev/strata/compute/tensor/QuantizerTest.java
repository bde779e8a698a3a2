package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QuantizerTest
{
    private static byte[] quantize(final GgmlType type, final float[] src, final int offset, final int n)
    {
        final ByteBuffer out = ByteBuffer.allocate((int)type.byteSize(n)).order(ByteOrder.LITTLE_ENDIAN);
        Quantizer.quantize(type, src, offset, n, out);
        assertEquals(0, out.remaining(), "quantize should fill exactly " + type.byteSize(n) + " bytes");
        return out.array();
    }

    private static float[] dequantize(final GgmlType type, final byte[] bytes, final int n)
    {
        final float[] out = new float[n];
        WeightTensor.of("q", type, MemorySegment.ofArray(bytes), 1, n).dequantizeRow(0, out, 0);
        return out;
    }

    /** Blocks of different character: gaussian, tiny, huge, all zero, one outlier, negative extreme. */
    private static float[] testValues(final Random rnd, final int blocks)
    {
        final float[] x = new float[blocks * 32];
        for (int b = 0; b < blocks; b++)
        {
            final int kind = b % 6;
            for (int j = 0; j < 32; j++)
            {
                final float g = (float)rnd.nextGaussian();
                x[b * 32 + j] = switch (kind)
                {
                    case 0 -> g;
                    case 1 -> g * 1e-3f;
                    case 2 -> g * 100f;
                    case 3 -> 0f;
                    case 4 -> j == 17 ? 50f : g * 0.1f;
                    default -> j == 3 ? -7.5f : g;
                };
            }
        }
        return x;
    }

    @Test
    void shouldMatchGgmlReferenceQuantizerForQ8_0()
    {
        final Random rnd = new Random(7);
        for (int trial = 0; trial < 20; trial++)
        {
            final int blocks = 1 + rnd.nextInt(9);
            final float[] x = testValues(rnd, blocks + 2);
            final int offset = 32 * (trial % 2) + trial % 3;
            final int n = blocks * 32;
            assertArrayEquals(ScalarReference.quantizeQ8_0(x, offset, n), quantize(GgmlType.Q8_0, x, offset, n),
                "trial " + trial);
        }
    }

    @Test
    void shouldRoundQ8_0HalfwayCasesAwayFromZeroLikeRoundf()
    {
        final float[] x = new float[32];
        x[0] = 127f; // d = 1, so the quants are the values rounded
        x[1] = -2.5f;
        x[2] = 2.5f;
        x[3] = -0.5f;
        x[4] = 0.5f;
        x[5] = -1.5f;
        x[6] = -126.5f;
        final byte[] q = quantize(GgmlType.Q8_0, x, 0, 32);
        assertEquals(0x3C00, ScalarReference.u16(q, 0), "d should be 1.0");
        final byte[] expected = {127, -3, 3, -1, 1, -2, -127};
        assertArrayEquals(expected, Arrays.copyOfRange(q, 2, 9), () -> HexFormat.ofDelimiter(" ").formatHex(q, 2, 9));
        assertArrayEquals(ScalarReference.quantizeQ8_0(x, 0, 32), q);
    }

    @Test
    void shouldMatchGgmlReferenceQuantizerForQ4_0()
    {
        final Random rnd = new Random(11);
        for (int trial = 0; trial < 20; trial++)
        {
            final int blocks = 1 + rnd.nextInt(9);
            final float[] x = testValues(rnd, blocks + 2);
            final int offset = 32 * (trial % 2) + trial % 5;
            final int n = blocks * 32;
            assertArrayEquals(ScalarReference.quantizeQ4_0(x, offset, n), quantize(GgmlType.Q4_0, x, offset, n),
                "trial " + trial);
        }
    }

    @Test
    void shouldQuantizeQ4_0WithTheSignedMaximumMappingToMinusEight()
    {
        final float[] x = new float[32];
        x[0] = -4f;      // the value of largest magnitude: d = -4 / -8 = 0.5, quant 0
        x[1] = 4f;       // +8 steps: clamped to 15 (weight 3.5)
        x[2] = 0.25f;    // 0.5 steps + 8.5 = 9.0 -> 9
        x[16] = -0.75f;  // -1.5 + 8.5 = 7.0 -> 7, high nibble of byte 0
        final byte[] q = quantize(GgmlType.Q4_0, x, 0, 32);
        assertEquals(0.5f, Float.float16ToFloat((short)ScalarReference.u16(q, 0)));
        assertEquals(0x70, q[2] & 0xFF);
        assertEquals(0x8F, q[3] & 0xFF);
        assertEquals(0x89, q[4] & 0xFF);
        assertArrayEquals(ScalarReference.quantizeQ4_0(x, 0, 32), q);
    }

    @Test
    void shouldQuantizeAllZeroBlocksToZeroScale()
    {
        final float[] zeros = new float[64];
        final byte[] q8 = quantize(GgmlType.Q8_0, zeros, 0, 64);
        final byte[] q4 = quantize(GgmlType.Q4_0, zeros, 0, 64);
        assertArrayEquals(ScalarReference.quantizeQ8_0(zeros, 0, 64), q8);
        assertArrayEquals(ScalarReference.quantizeQ4_0(zeros, 0, 64), q4);
        for (final float v : dequantize(GgmlType.Q8_0, q8, 64))
        {
            assertEquals(0f, Math.abs(v));
        }
        for (final float v : dequantize(GgmlType.Q4_0, q4, 64))
        {
            assertEquals(0f, Math.abs(v));
        }
    }

    @Test
    void shouldRoundTripQ8_0WithinHalfAStep()
    {
        final Random rnd = new Random(3);
        final float[] x = testValues(rnd, 24);
        final byte[] q = quantize(GgmlType.Q8_0, x, 0, x.length);
        final float[] y = dequantize(GgmlType.Q8_0, q, x.length);
        for (int b = 0; b < x.length / 32; b++)
        {
            float amax = 0f;
            for (int j = 0; j < 32; j++)
            {
                amax = Math.max(amax, Math.abs(x[b * 32 + j]));
            }
            final float d = amax / 127f;
            final float stored = Float.float16ToFloat((short)ScalarReference.u16(q, b * 34));
            for (int j = 0; j < 32; j++)
            {
                final int i = b * 32 + j;
                final int quant = q[b * 34 + 2 + j];
                // half a step, plus what storing d as f16 costs at this quant
                final double bound = d / 2.0 * (1 + 1e-6) + Math.abs(quant) * Math.abs((double)d - stored) + 1e-30;
                assertTrue(Math.abs((double)x[i] - y[i]) <= bound,
                    "element " + i + ": " + x[i] + " -> " + y[i] + ", bound " + bound);
            }
        }
    }

    @Test
    void shouldRoundTripQ4_0WithinGgmlRoundingBound()
    {
        final Random rnd = new Random(5);
        final float[] x = testValues(rnd, 24);
        final byte[] q = quantize(GgmlType.Q4_0, x, 0, x.length);
        final float[] y = dequantize(GgmlType.Q4_0, q, x.length);
        for (int b = 0; b < x.length / 32; b++)
        {
            float amax = 0f;
            float max = 0f;
            for (int j = 0; j < 32; j++)
            {
                if (Math.abs(x[b * 32 + j]) > amax)
                {
                    amax = Math.abs(x[b * 32 + j]);
                    max = x[b * 32 + j];
                }
            }
            final float d = max / -8f;
            final float stored = Float.float16ToFloat((short)ScalarReference.u16(q, b * 18));
            for (int j = 0; j < 32; j++)
            {
                final int i = b * 32 + j;
                // x / d in [-8, 8]: rounds to the nearest step, except values past 7.5 steps clamp to 7
                final double steps = d == 0f ? 0 : x[i] / (double)d;
                final double bound = (steps > 7.5 ? Math.abs(d) * (steps - 7) : Math.abs(d) / 2.0) * (1 + 1e-6) +
                    8 * Math.abs((double)d - stored) + 1e-30;
                assertTrue(Math.abs((double)x[i] - y[i]) <= bound,
                    "element " + i + ": " + x[i] + " -> " + y[i] + " (d " + d + "), bound " + bound);
            }
        }
    }

    @Test
    void shouldRoundTripF16WithinHalfAnUlp()
    {
        final Random rnd = new Random(9);
        final float[] x = new float[4096];
        for (int i = 0; i < x.length; i++)
        {
            x[i] = (float)(rnd.nextGaussian() * Math.pow(2, rnd.nextInt(40) - 28));
        }
        final float[] y = dequantize(GgmlType.F16, quantize(GgmlType.F16, x, 0, x.length), x.length);
        for (int i = 0; i < x.length; i++)
        {
            final double err = Math.abs((double)x[i] - y[i]);
            final double bound = Math.max(Math.abs(x[i]) * 0x1p-11, 0x1p-25);
            assertTrue(err <= bound, x[i] + " -> " + y[i]);
        }
    }

    @Test
    void shouldRoundTripBF16WithinHalfAnUlpRoundingTiesToEven()
    {
        final Random rnd = new Random(13);
        final float[] x = new float[4096];
        for (int i = 0; i < x.length; i++)
        {
            x[i] = i < 8 ? new float[]{Float.intBitsToFloat(0x3F808000), Float.intBitsToFloat(0x3F818000),
                Float.intBitsToFloat(0xBF808001), Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, -0f,
                Float.MAX_VALUE, Float.MIN_VALUE}[i] : (float)(rnd.nextGaussian() * Math.pow(2, rnd.nextInt(60) - 30));
        }
        final byte[] q = quantize(GgmlType.BF16, x, 0, x.length);
        assertEquals(0x3F80, ScalarReference.u16(q, 0), "tie with even lower half stays");
        assertEquals(0x3F82, ScalarReference.u16(q, 2), "tie with odd lower half rounds up");
        assertEquals(0xBF81, ScalarReference.u16(q, 4), "above the tie rounds away");
        assertEquals(0x7F80, ScalarReference.u16(q, 6), "+inf");
        assertEquals(0xFF80, ScalarReference.u16(q, 8), "-inf");
        assertEquals(0x8000, ScalarReference.u16(q, 10), "-0");
        assertEquals(0x7F80, ScalarReference.u16(q, 12), "FLT_MAX rounds to +inf like ggml");
        for (int i = 0; i < x.length; i++)
        {
            assertEquals(ScalarReference.bf16RoundNearestEven(x[i]) & 0xFFFF, ScalarReference.u16(q, 2 * i), "element " + i);
        }
        final float[] y = dequantize(GgmlType.BF16, q, x.length);
        for (int i = 8; i < x.length; i++)
        {
            assertTrue(Math.abs((double)x[i] - y[i]) <= Math.abs(x[i]) * 0x1p-8, x[i] + " -> " + y[i]);
        }
    }

    @Test
    void shouldQuietBF16NaNsLikeGgml()
    {
        final float[] x = {Float.intBitsToFloat(0x7F800001), Float.intBitsToFloat(0xFF810000)};
        final byte[] q = quantize(GgmlType.BF16, x, 0, 2);
        assertEquals(0x7FC0, ScalarReference.u16(q, 0));
        assertEquals(0xFFC1, ScalarReference.u16(q, 2));
    }

    @Test
    void shouldWriteF32Verbatim()
    {
        final float[] x = {1.5f, -0f, Float.MIN_VALUE, 3.4e38f};
        final byte[] q = quantize(GgmlType.F32, x, 0, 4);
        final ByteBuffer b = ByteBuffer.wrap(q).order(ByteOrder.LITTLE_ENDIAN);
        for (final float v : x)
        {
            assertEquals(Float.floatToRawIntBits(v), b.getInt());
        }
    }

    @Test
    void shouldRejectTypesItCannotWriteAndBigEndianBuffers()
    {
        for (final GgmlType type : GgmlType.values())
        {
            final boolean expected = type == GgmlType.F32 || type == GgmlType.F16 || type == GgmlType.BF16 ||
                type == GgmlType.Q8_0 || type == GgmlType.Q4_0;
            assertEquals(expected, Quantizer.canWrite(type), type.toString());
        }
        final ByteBuffer out = ByteBuffer.allocate(1024).order(ByteOrder.LITTLE_ENDIAN);
        final UnsupportedTensorTypeException ex = assertThrows(UnsupportedTensorTypeException.class,
            () -> Quantizer.quantize(GgmlType.Q4_K, new float[256], 0, 256, out));
        assertTrue(ex.getMessage().contains("Q4_K"), ex.getMessage());
        final IllegalArgumentException be = assertThrows(IllegalArgumentException.class,
            () -> Quantizer.quantize(GgmlType.F32, new float[4], 0, 4, ByteBuffer.allocate(16)));
        assertTrue(be.getMessage().contains("little-endian"), be.getMessage());
        assertFalse(Quantizer.canWrite(GgmlType.Q6_K));
    }
}
