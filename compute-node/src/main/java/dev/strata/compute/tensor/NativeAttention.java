package dev.strata.compute.tensor;

import java.lang.foreign.MemorySegment;

/**
 * Attention of one row over a sequence's keys and values read in place from a KV pool's blocks, by the native kernel
 * {@code attend_kv} (see its definitions in {@code kernels.c}): the query heads that share a key-value head, their
 * scores, softmax and weighted sum of the values in one call, F16 keys and values converted by F16C as they are read
 * (no copy of the sequence into floats first). Over an 8-bit pool the scores are integer dot products of the keys
 * with the query quantized the same way. Every call with the same inputs gives the same bits, so the engine uses
 * it for every row that must attend the same alone and batched (decode, and batch-invariant prefill).
 * <p>
 * {@link Kernels#attention()} gives one where a native kernel set is loaded (AVX-512 in 16-lane runs, AVX2 in 8-lane
 * runs, each set with its own order of additions); elsewhere the engine keeps the Java loops
 * ({@code Llama.attendGroup}).
 */
public final class NativeAttention
{
    /** Largest head size, and most query heads of one call, the kernel takes. */
    public static final int MAX_HEAD_SIZE = 256;
    public static final int MAX_HEADS = 256;

    private final NativeKernels natives;

    NativeAttention(final NativeKernels natives)
    {
        this.natives = natives;
    }

    /** Whether the kernel takes a row of {@code heads} query heads of {@code headSize} elements. */
    public static boolean supports(final int headSize, final int heads)
    {
        return headSize % 16 == 0 && headSize <= MAX_HEAD_SIZE && heads >= 1 && heads <= MAX_HEADS;
    }

    /**
     * Floats of scratch a call over {@code n} positions needs for {@code keyValueHeads} key-value heads of
     * {@code group} query heads each (their scores, and the 8-bit pool's value scales).
     */
    public static int scratchFloats(final int keyValueHeads, final int group, final int n)
    {
        return keyValueHeads * (group + 1) * ((n + 15) & ~15);
    }

    /**
     * One row's query heads of the key-value heads {@code [kv0, kv1)} (query head {@code kvh * group + h} at
     * {@code q[qOffset + (kvh * group + h) * headSize ..]}, {@code group} per key-value head), over positions
     * {@code [0, n)} of the sequence whose blocks are {@code table} in {@code pool} (block {@code b} at
     * {@code b * blockBytes}; layer {@code layer}'s keys, then values, position-major, {@code kvDim} elements of
     * {@code elementBytes}: 2 for F16, 4 for F32, 1 for the 8-bit layout with its scales, {@code KvBlockPool.KvType.Q8}),
     * into {@code out} at the same offsets from {@code outOffset}.
     */
    public void attend(final MemorySegment pool, final long blockBytes, final int[] table, final int blockTokens,
        final int kvDim, final int elementBytes, final int layer, final float[] q, final int qOffset, final int group,
        final int kv0, final int kv1, final int headSize, final int n, final float scale, final float[] scratch,
        final float[] out, final int outOffset)
    {
        final int heads = (kv1 - kv0) * group;
        if (n < 1 || (n + blockTokens - 1) / blockTokens > table.length ||
            scratch.length < scratchFloats(kv1 - kv0, group, n) || (elementBytes != 1 && elementBytes != 2 &&
            elementBytes != 4) || !supports(headSize, heads) || kv0 < 0 ||
            kv1 * headSize > kvDim || group < 1)
        {
            throw new IllegalArgumentException("attend: n " + n + ", " + table.length + " blocks, scratch " +
                scratch.length + ", element bytes " + elementBytes + ", head size " + headSize + ", key-value heads " +
                kv0 + ".." + kv1 + " of " + kvDim / Math.max(1, headSize) + ", group " + group);
        }
        try
        {
            natives.attendKv.invokeExact(pool, blockBytes, MemorySegment.ofArray(table), blockTokens, kvDim,
                elementBytes, layer, MemorySegment.ofArray(q), qOffset, group, kv0, kv1, headSize, n, scale,
                MemorySegment.ofArray(scratch), MemorySegment.ofArray(out), outOffset);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native attention failed", e);
        }
    }
}
