package dev.strata.compute.gguf;

/**
 * One tensor's entry in a GGUF file.
 *
 * @param name    tensor name, e.g. {@code blk.0.attn_q.weight}.
 * @param type    element type.
 * @param shape   dimensions in ggml order: {@code shape[0]} is the contiguous (row) length.
 * @param offset  byte offset relative to the start of the tensor data section.
 * @param byteSize bytes the tensor occupies.
 */
public record GgufTensorInfo(String name, GgmlType type, long[] shape, long offset, long byteSize)
{
    /** Total number of elements. */
    public long elementCount()
    {
        long n = 1;
        for (final long d : shape)
        {
            n *= d;
        }
        return n;
    }

    /** Row length (the contiguous dimension). */
    public long rowLength()
    {
        return shape[0];
    }

    /** Number of rows: the product of all dimensions but the first. */
    public long rowCount()
    {
        return elementCount() / shape[0];
    }
}
