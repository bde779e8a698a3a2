package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Q4_0 weights repacked for the native kernels: the same bytes as ggml's layout ({@link Q4_0Tensor}), reordered within
 * each group of {@value #GROUP} consecutive rows so that one 512-bit vector (two 256-bit halves on AVX2) holds 4 nibble
 * bytes of each of the 16 rows (one row per 32-bit lane) and the scales sit apart. Rows after the last whole group keep
 * ggml's layout.
 * <pre>
 * group g (16 x rowBytes bytes, at g * 16 * rowBytes):
 *   +---------------------------------------------+-----------------------------+
 *   | block 0: 4 x 64 bytes | block 1 | ... | nb-1 | scales: nb x 16 f16         |
 *   +---------------------------------------------+-----------------------------+
 *   block b, vector k (64 bytes): lane r = bytes 4k..4k+3 of row r's nibbles in block b
 *   scales: block b's 16 f16 at nb * 256 + 32b, row r at + 2r
 * </pre>
 * Byte j of a block holds weight j (low nibble) and weight j + 16 (high nibble), as in ggml: the nibbles are not
 * moved, only the bytes. The native kernel ({@code mm_q4_0r}) reads this layout; the Java methods
 * here read it too (scalar code, for a tensor used with the Java kernels after it was repacked), so every user of a
 * {@link WeightTensor} keeps working.
 */
final class Q4_0x16Tensor extends WeightTensor
{
    static final int GROUP = 16;

    Q4_0x16Tensor(final String name, final MemorySegment data, final int rows, final int cols)
    {
        super(name, GgmlType.Q4_0, data, rows, cols);
    }

    /** Rows in whole groups (repacked); the rows from here on are in ggml's layout. */
    int repackedRows()
    {
        return rows / GROUP * GROUP;
    }

    /** Offset of block {@code b}'s scale of row {@code row}. */
    private long scaleOffset(final int row, final int b)
    {
        if (row >= repackedRows())
        {
            return row * rowBytes + (long)b * Q4_0Tensor.BYTES;
        }
        final long base = (long)(row / GROUP) * GROUP * rowBytes;
        return base + (long)(cols / Q4_0Tensor.BLOCK) * 256 + 32L * b + 2L * (row % GROUP);
    }

    /** Offset of nibble byte {@code j} (0-15) of block {@code b} of row {@code row}. */
    private long byteOffset(final int row, final int b, final int j)
    {
        if (row >= repackedRows())
        {
            return row * rowBytes + (long)b * Q4_0Tensor.BYTES + 2 + j;
        }
        final long base = (long)(row / GROUP) * GROUP * rowBytes;
        return base + 256L * b + 64L * (j / 4) + 4L * (row % GROUP) + (j % 4);
    }

    @Override
    public float dot(final int row, final float[] x, final int xOffset)
    {
        final int blocks = cols / Q4_0Tensor.BLOCK;
        float sum = 0f;
        for (int b = 0; b < blocks; b++)
        {
            float s = 0f;
            final int xi = xOffset + b * Q4_0Tensor.BLOCK;
            for (int j = 0; j < 16; j++)
            {
                final int q = data.get(ValueLayout.JAVA_BYTE, byteOffset(row, b, j)) & 0xFF;
                s += ((q & 0x0F) - 8) * x[xi + j] + ((q >>> 4) - 8) * x[xi + j + 16];
            }
            sum += s * f16(data, scaleOffset(row, b));
        }
        return sum;
    }

    @Override
    public void dequantize(final int row, final int col0, final int n, final float[] dst, final int dstOffset)
    {
        final int b0 = col0 / Q4_0Tensor.BLOCK;
        for (int i = 0; i < n / Q4_0Tensor.BLOCK; i++)
        {
            final int b = b0 + i;
            final float d = f16(data, scaleOffset(row, b));
            final int o = dstOffset + i * Q4_0Tensor.BLOCK;
            for (int j = 0; j < 16; j++)
            {
                final int q = data.get(ValueLayout.JAVA_BYTE, byteOffset(row, b, j)) & 0xFF;
                dst[o + j] = d * ((q & 0x0F) - 8);
                dst[o + j + 16] = d * ((q >>> 4) - 8);
            }
        }
    }
}
