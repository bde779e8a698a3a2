package dev.strata.compute.model;

import dev.strata.compute.tensor.Lanes;
import dev.strata.compute.tensor.MatOps;
import dev.strata.compute.tensor.ThreadPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.util.Arrays;

/**
 * Causal attention of a batch of query tokens (prompt processing) as blocked matrix products, head by head, in
 * tiles of {@value #TILE} query tokens:
 * <ol>
 * <li>the keys of every KV head are packed once per layer, transposed ({@code hs x positions}), for all the heads
 * of its group;</li>
 * <li>scores {@code S = Q K^T}: {@value #TILE} query tokens x 4 vectors of positions;</li>
 * <li>a vectorized softmax with the causal mask;</li>
 * <li>{@code O = P V}: {@value #TILE} query tokens x 4 vectors of the head dimension, straight from the value
 * pages.</li>
 * </ol>
 * Both products run the batched matrix product's register-blocked kernel, {@link MatOps#accumulate4x4}.
 * Decode (one query token) keeps the per-position loop of {@link Llama}: it reads each key once either way.
 */
final class PrefillAttention
{
    static final int TILE = 4;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = MatOps.KERNEL_LANES;
    /** Positions per score tile, and head dimensions per output tile. */
    private static final int BLOCK = 4 * L;
    private static final int CHUNKS_PER_THREAD = 16;

    private final ThreadLocal<float[]> scores = ThreadLocal.withInitial(() -> new float[0]);
    /** Per thread: one output tile, {@value #TILE} x BLOCK, summed over the value pages. */
    private final ThreadLocal<float[]> outTile = ThreadLocal.withInitial(() -> new float[TILE * BLOCK]);
    /** Keys of the current layer, transposed: {@code keysT[(g * hs + d) * stride + p]}. */
    private float[] keysT = new float[0];

    /** Whether batches of {@code n} tokens with heads of {@code headSize} take this path. */
    static boolean supports(final int headSize, final int n)
    {
        return n >= TILE && L >= 8 && L == F.length() && headSize % BLOCK == 0;
    }

    /**
     * Attention of the first {@code n - n % TILE} tokens of rows {@code [row0, row0 + n)} of the batch (the caller does
     * the rest), whose keys and
     * values are already in {@code kv}; writes {@code att[t * qDim + h * hs ..]}.
     */
    void run(final ThreadPool pool, final ModelConfig c, final KvPages kv, final int l, final float[] q,
        final float[] att, final int row0, final int n, final int startPos)
    {
        final int hs = c.headSize();
        final int heads = c.heads();
        final int kvHeads = c.kvHeads();
        final int group = heads / kvHeads;
        final int qDim = c.qDim();
        final int kvDim = c.kvDim();
        final int positions = startPos + n;
        final int stride = (positions + BLOCK - 1) / BLOCK * BLOCK;
        final float scale = (float)(1.0 / Math.sqrt(hs));
        final int pageTokens = kv.pageTokens();
        if (keysT.length < kvHeads * hs * stride)
        {
            keysT = new float[kvHeads * hs * stride];
        }
        final float[] kt = keysT;
        pool.parallelFor(positions, (p0, p1) ->
        {
            for (int p = p0; p < p1; p++)
            {
                final float[] page = kv.keyPage(l, p);
                final int off = kv.offset(p);
                for (int i = 0; i < kvDim; i++)
                {
                    kt[i * stride + p] = page[off + i];
                }
            }
        });

        final int tiles = n / TILE;
        pool.parallelFor(tiles * heads, CHUNKS_PER_THREAD, (start, end) ->
        {
            float[] s = scores.get();
            if (s.length < TILE * stride)
            {
                s = new float[TILE * stride];
                scores.set(s);
            }
            final float[] o = outTile.get();
            for (int i = start; i < end; i++)
            {
                final int t0 = (i / heads) * TILE;
                final int h = i % heads;
                final int g = h / group;
                final int qo = (row0 + t0) * qDim + h * hs;
                // positions the tile's last token sees, rounded up to whole score blocks (all within stride)
                final int seen = startPos + t0 + TILE;
                final int blocks = (seen + BLOCK - 1) / BLOCK * BLOCK;
                for (int r = 0; r < TILE; r++)
                {
                    Arrays.fill(s, r * stride, r * stride + blocks, 0f);
                }
                for (int pb = 0; pb < blocks; pb += BLOCK)
                {
                    MatOps.accumulate4x4(q, qo, qDim, hs, kt, g * hs * stride + pb, stride, s, pb, stride);
                }
                final float inv0 = softmax(s, 0, startPos + t0 + 1, blocks, scale);
                final float inv1 = softmax(s, stride, startPos + t0 + 2, blocks, scale);
                final float inv2 = softmax(s, 2 * stride, startPos + t0 + 3, blocks, scale);
                final float inv3 = softmax(s, 3 * stride, startPos + t0 + 4, blocks, scale);
                for (int dc = 0; dc < hs; dc += BLOCK)
                {
                    // weighted values, page by page (masked positions weigh 0), then normalised
                    Arrays.fill(o, 0f);
                    for (int p0 = 0; p0 < seen; p0 += pageTokens)
                    {
                        MatOps.accumulate4x4(s, p0, stride, Math.min(seen, p0 + pageTokens) - p0,
                            kv.valuePage(l, p0), kv.offset(p0) + g * hs + dc, kvDim, o, 0, BLOCK);
                    }
                    final int ao = qo + dc;
                    for (int j = 0; j < BLOCK; j += L)
                    {
                        FloatVector.fromArray(F, o, j).mul(inv0).intoArray(att, ao + j);
                        FloatVector.fromArray(F, o, BLOCK + j).mul(inv1).intoArray(att, ao + qDim + j);
                        FloatVector.fromArray(F, o, 2 * BLOCK + j).mul(inv2).intoArray(att, ao + 2 * qDim + j);
                        FloatVector.fromArray(F, o, 3 * BLOCK + j).mul(inv3).intoArray(att, ao + 3 * qDim + j);
                    }
                }
            }
        });
    }

    /**
     * Softmax in place of the scaled scores {@code s[so .. so+visible)}, with {@code s[so+visible .. so+blocks)}
     * masked to zero weight; returns 1 / sum, applied to the output instead of every weight.
     */
    private static float softmax(final float[] s, final int so, final int visible, final int blocks, final float scale)
    {
        for (int p = visible; p < blocks; p++)
        {
            s[so + p] = Float.NEGATIVE_INFINITY;
        }
        FloatVector max = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (int p = 0; p < blocks; p += L)
        {
            max = max.max(FloatVector.fromArray(F, s, so + p));
        }
        final float m = max.reduceLanes(VectorOperators.MAX);
        FloatVector sum = FloatVector.zero(F);
        for (int p = 0; p < blocks; p += L)
        {
            final FloatVector d = FloatVector.fromArray(F, s, so + p).sub(m).mul(scale);
            final FloatVector e = dev.strata.compute.tensor.Exp.of(d);
            e.intoArray(s, so + p);
            sum = sum.add(e);
        }
        return 1f / Lanes.sum(sum);
    }
}
