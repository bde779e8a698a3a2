package dev.strata.compute.model;

import dev.strata.compute.tensor.ThreadPool;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Causal attention of a batch of query tokens (prompt processing) as blocked matrix products, head by head, in
 * tiles of {@value #TILE} query tokens:
 * <ol>
 * <li>the keys of every KV head are packed once per layer, transposed ({@code hs x positions}), for all the heads
 * of its group;</li>
 * <li>scores {@code S = Q K^T}: {@value #TILE} query tokens x 4 vectors of positions, 16 accumulators, one
 * broadcast of a query element feeding 4 FMAs (no horizontal sums);</li>
 * <li>a vectorized softmax with the causal mask;</li>
 * <li>{@code O = P V}: {@value #TILE} query tokens x 4 vectors of the head dimension, straight from the value
 * pages.</li>
 * </ol>
 * Decode (one query token) keeps the per-position loop of {@link Llama}: it reads each key once either way.
 */
final class PrefillAttention
{
    static final int TILE = 4;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Positions per score tile, and head dimensions per output tile. */
    private static final int BLOCK = 4 * L;
    private static final int CHUNKS_PER_THREAD = 16;

    private final ThreadLocal<float[]> scores = ThreadLocal.withInitial(() -> new float[0]);
    /** Keys of the current layer, transposed: {@code keysT[(g * hs + d) * stride + p]}. */
    private float[] keysT = new float[0];

    /** Whether batches of {@code n} tokens with heads of {@code headSize} take this path. */
    static boolean supports(final int headSize, final int n)
    {
        return n >= TILE && L >= 8 && headSize % BLOCK == 0;
    }

    /**
     * Attention of the first {@code n - n % TILE} tokens of the batch (the caller does the rest), whose keys and
     * values are already in {@code kv}; writes {@code att[t * qDim + h * hs ..]}.
     */
    void run(final ThreadPool pool, final ModelConfig c, final KvCache kv, final int l, final float[] q,
        final float[] att, final int n, final int startPos)
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
            for (int i = start; i < end; i++)
            {
                final int t0 = (i / heads) * TILE;
                final int h = i % heads;
                final int g = h / group;
                final int qo = t0 * qDim + h * hs;
                // positions the tile's last token sees, rounded up to whole score blocks (all within stride)
                final int seen = startPos + t0 + TILE;
                final int blocks = (seen + BLOCK - 1) / BLOCK * BLOCK;
                for (int pb = 0; pb < blocks; pb += BLOCK)
                {
                    scores(q, qo, qDim, kt, g * hs * stride + pb, stride, hs, s, pb);
                }
                final float inv0 = softmax(s, 0, startPos + t0 + 1, blocks, scale);
                final float inv1 = softmax(s, stride, startPos + t0 + 2, blocks, scale);
                final float inv2 = softmax(s, 2 * stride, startPos + t0 + 3, blocks, scale);
                final float inv3 = softmax(s, 3 * stride, startPos + t0 + 4, blocks, scale);
                for (int dc = 0; dc < hs; dc += BLOCK)
                {
                    values(s, stride, kv, l, seen, g * hs + dc, inv0, inv1, inv2, inv3, att, qo + dc, qDim);
                }
            }
        });
    }

    /** {@code s[r * stride + so ..+BLOCK) = Q[r] . K^T[.., pb ..+BLOCK)} for the tile's {@value #TILE} tokens. */
    private static void scores(final float[] q, final int qo, final int qDim, final float[] kt, final int ko,
        final int stride, final int hs, final float[] s, final int so)
    {
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F), c03 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F), c13 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F), c23 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F), c33 = FloatVector.zero(F);
        for (int d = 0; d < hs; d++)
        {
            final int ki = ko + d * stride;
            final FloatVector k0 = FloatVector.fromArray(F, kt, ki);
            final FloatVector k1 = FloatVector.fromArray(F, kt, ki + L);
            final FloatVector k2 = FloatVector.fromArray(F, kt, ki + 2 * L);
            final FloatVector k3 = FloatVector.fromArray(F, kt, ki + 3 * L);
            FloatVector b = FloatVector.broadcast(F, q[qo + d]);
            c00 = k0.fma(b, c00);
            c01 = k1.fma(b, c01);
            c02 = k2.fma(b, c02);
            c03 = k3.fma(b, c03);
            b = FloatVector.broadcast(F, q[qo + qDim + d]);
            c10 = k0.fma(b, c10);
            c11 = k1.fma(b, c11);
            c12 = k2.fma(b, c12);
            c13 = k3.fma(b, c13);
            b = FloatVector.broadcast(F, q[qo + 2 * qDim + d]);
            c20 = k0.fma(b, c20);
            c21 = k1.fma(b, c21);
            c22 = k2.fma(b, c22);
            c23 = k3.fma(b, c23);
            b = FloatVector.broadcast(F, q[qo + 3 * qDim + d]);
            c30 = k0.fma(b, c30);
            c31 = k1.fma(b, c31);
            c32 = k2.fma(b, c32);
            c33 = k3.fma(b, c33);
        }
        final int s1 = so + stride;
        final int s2 = s1 + stride;
        final int s3 = s2 + stride;
        c00.intoArray(s, so);
        c01.intoArray(s, so + L);
        c02.intoArray(s, so + 2 * L);
        c03.intoArray(s, so + 3 * L);
        c10.intoArray(s, s1);
        c11.intoArray(s, s1 + L);
        c12.intoArray(s, s1 + 2 * L);
        c13.intoArray(s, s1 + 3 * L);
        c20.intoArray(s, s2);
        c21.intoArray(s, s2 + L);
        c22.intoArray(s, s2 + 2 * L);
        c23.intoArray(s, s2 + 3 * L);
        c30.intoArray(s, s3);
        c31.intoArray(s, s3 + L);
        c32.intoArray(s, s3 + 2 * L);
        c33.intoArray(s, s3 + 3 * L);
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
            final FloatVector e = FloatVector.fromArray(F, s, so + p).sub(m).mul(scale).lanewise(VectorOperators.EXP);
            e.intoArray(s, so + p);
            sum = sum.add(e);
        }
        return 1f / sum.reduceLanes(VectorOperators.ADD);
    }

    /**
     * {@code att[ao + r * qDim ..+BLOCK) = inv_r * sum_p s[r * stride + p] * V[p][vo ..+BLOCK)} over the
     * {@code seen} positions, for the tile's {@value #TILE} tokens (masked positions have weight 0).
     */
    private static void values(final float[] s, final int stride, final KvCache kv, final int l, final int seen,
        final int vo, final float inv0, final float inv1, final float inv2, final float inv3, final float[] att,
        final int ao, final int qDim)
    {
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F), c03 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F), c13 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F), c23 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F), c33 = FloatVector.zero(F);
        for (int p0 = 0; p0 < seen; p0 += KvCache.PAGE_TOKENS)
        {
            final float[] page = kv.valuePage(l, p0);
            final int p1 = Math.min(seen, p0 + KvCache.PAGE_TOKENS);
            for (int p = p0; p < p1; p++)
            {
                final int vi = kv.offset(p) + vo;
                final FloatVector v0 = FloatVector.fromArray(F, page, vi);
                final FloatVector v1 = FloatVector.fromArray(F, page, vi + L);
                final FloatVector v2 = FloatVector.fromArray(F, page, vi + 2 * L);
                final FloatVector v3 = FloatVector.fromArray(F, page, vi + 3 * L);
                FloatVector b = FloatVector.broadcast(F, s[p]);
                c00 = v0.fma(b, c00);
                c01 = v1.fma(b, c01);
                c02 = v2.fma(b, c02);
                c03 = v3.fma(b, c03);
                b = FloatVector.broadcast(F, s[stride + p]);
                c10 = v0.fma(b, c10);
                c11 = v1.fma(b, c11);
                c12 = v2.fma(b, c12);
                c13 = v3.fma(b, c13);
                b = FloatVector.broadcast(F, s[2 * stride + p]);
                c20 = v0.fma(b, c20);
                c21 = v1.fma(b, c21);
                c22 = v2.fma(b, c22);
                c23 = v3.fma(b, c23);
                b = FloatVector.broadcast(F, s[3 * stride + p]);
                c30 = v0.fma(b, c30);
                c31 = v1.fma(b, c31);
                c32 = v2.fma(b, c32);
                c33 = v3.fma(b, c33);
            }
        }
        final int a1 = ao + qDim;
        final int a2 = a1 + qDim;
        final int a3 = a2 + qDim;
        c00.mul(inv0).intoArray(att, ao);
        c01.mul(inv0).intoArray(att, ao + L);
        c02.mul(inv0).intoArray(att, ao + 2 * L);
        c03.mul(inv0).intoArray(att, ao + 3 * L);
        c10.mul(inv1).intoArray(att, a1);
        c11.mul(inv1).intoArray(att, a1 + L);
        c12.mul(inv1).intoArray(att, a1 + 2 * L);
        c13.mul(inv1).intoArray(att, a1 + 3 * L);
        c20.mul(inv2).intoArray(att, a2);
        c21.mul(inv2).intoArray(att, a2 + L);
        c22.mul(inv2).intoArray(att, a2 + 2 * L);
        c23.mul(inv2).intoArray(att, a2 + 3 * L);
        c30.mul(inv3).intoArray(att, a3);
        c31.mul(inv3).intoArray(att, a3 + L);
        c32.mul(inv3).intoArray(att, a3 + 2 * L);
        c33.mul(inv3).intoArray(att, a3 + 3 * L);
    }
}
