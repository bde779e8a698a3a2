package dev.strata.compute.model;

import dev.strata.compute.tensor.MatOps;
import dev.strata.compute.tensor.ThreadPool;

import java.util.Arrays;

/**
 * Attention of a batched step over keys and values in a {@link KvBlockPool}, sequence by sequence:
 * <ul>
 * <li>a segment of one to three rows (decode, a prompt's last rows) is one task per segment in a single parallel
 * loop over the whole step: the task reads the sequence's keys and values of the layer from its blocks into
 * thread-local floats, a whole block's run of positions per read (contiguous in the block layout), then attends
 * every query head;</li>
 * <li>a longer segment (a prompt chunk) first gathers the sequence's keys and values of the layer into one float
 * page, then runs the same attention code as a lone sequence ({@link Llama#attention}, blocked products for whole
 * tiles).</li>
 * </ul>
 */
final class PagedAttention
{
    /** Rows from which a segment is gathered and attended as a prompt chunk. */
    static final int GATHER_ROWS = 4;

    final KvBlockPool pool;
    private final Llama llama;
    private final ModelConfig c;
    private final Gathered gathered = new Gathered();
    /** Per thread: a sequence's keys and values of a layer (positions x kvDim), and scores (positions). */
    private final ThreadLocal<float[][]> scratch = ThreadLocal.withInitial(() -> new float[3][0]);
    private int[] small = new int[0];

    PagedAttention(final Llama llama, final KvBlockPool pool)
    {
        this.llama = llama;
        this.pool = pool;
        this.c = llama.config();
    }

    /** Writes {@code att} for every row of {@code segs} from {@code q}, at layer {@code l}. */
    void run(final int l, final ForwardBatch.Segment[] segs, final float[] q, final float[] att)
    {
        int smallCount = 0;
        if (small.length < segs.length)
        {
            small = new int[segs.length];
        }
        for (int i = 0; i < segs.length; i++)
        {
            if (segs[i].rows() < GATHER_ROWS)
            {
                small[smallCount++] = i;
            }
        }
        final ThreadPool threads = llama.pool();
        if (smallCount > 0)
        {
            final int[] idx = small;
            threads.parallelFor(smallCount, smallCount == 1 ? 1 : 4,
                (start, end) -> {
                    for (int i = start; i < end; i++)
                    {
                        attendSegment(l, segs[idx[i]], q, att);
                    }
                });
        }
        for (final ForwardBatch.Segment s : segs)
        {
            if (s.rows() >= GATHER_ROWS)
            {
                gathered.fill(threads, l, s);
                llama.attention(l, s.row0(), s.rows(), s.startPos(), gathered);
            }
        }
    }

    /** Every query head of the rows of {@code s}, over its keys and values of layer {@code l}. */
    private void attendSegment(final int l, final ForwardBatch.Segment s, final float[] q, final float[] att)
    {
        final int hs = c.headSize();
        final int kvDim = c.kvDim();
        final int group = c.heads() / c.kvHeads();
        final int qDim = c.qDim();
        final int bt = pool.blockTokens();
        final int positions = s.endPos();
        final float scale = (float)(1.0 / Math.sqrt(hs));
        final float[][] tl = scratch.get();
        if (tl[0].length < positions * kvDim)
        {
            final int cap = Math.max(positions, 256) * 2;
            tl[0] = new float[cap * kvDim];
            tl[1] = new float[cap * kvDim];
            tl[2] = new float[cap];
        }
        final float[] keys = tl[0];
        final float[] values = tl[1];
        final float[] scores = tl[2];
        final int[] table = s.blockTable();
        for (int p0 = 0; p0 < positions; p0 += bt)
        {
            final int n = Math.min(bt, positions - p0);
            final int block = table[p0 / bt];
            // slots of a block are contiguous: one read of n positions x kvDim
            pool.read(block, l, 0, 0, 0, n * kvDim, keys, p0 * kvDim);
            pool.read(block, l, 1, 0, 0, n * kvDim, values, p0 * kvDim);
        }
        for (int t = 0; t < s.rows(); t++)
        {
            final int pos = s.startPos() + t;
            for (int h = 0; h < c.heads(); h++)
            {
                final int qo = (s.row0() + t) * qDim + h * hs;
                final int ko = (h / group) * hs;
                float max = Float.NEGATIVE_INFINITY;
                for (int p = 0; p <= pos; p++)
                {
                    final float score = MatOps.dot(q, qo, keys, p * kvDim + ko, hs) * scale;
                    scores[p] = score;
                    max = Math.max(max, score);
                }
                float sum = 0f;
                for (int p = 0; p <= pos; p++)
                {
                    final float e = (float)Math.exp(scores[p] - max);
                    scores[p] = e;
                    sum += e;
                }
                final float inv = 1f / sum;
                Arrays.fill(att, qo, qo + hs, 0f);
                for (int p = 0; p <= pos; p++)
                {
                    MatOps.axpy(scores[p] * inv, values, p * kvDim + ko, att, qo, hs);
                }
            }
        }
    }

    /** One sequence's keys and values of one layer as a single float page. */
    private final class Gathered implements KvPages
    {
        private float[] keys = new float[0];
        private float[] values = new float[0];
        private int positions;

        void fill(final ThreadPool threads, final int l, final ForwardBatch.Segment s)
        {
            final int kvDim = c.kvDim();
            final int bt = pool.blockTokens();
            positions = s.endPos();
            if (keys.length < positions * kvDim)
            {
                keys = new float[positions * kvDim * 2];
                values = new float[positions * kvDim * 2];
            }
            final float[] k = keys;
            final float[] v = values;
            final int[] table = s.blockTable();
            threads.parallelFor(positions, (p0, p1) ->
            {
                for (int p = p0; p < p1; p++)
                {
                    final int block = table[p / bt];
                    pool.read(block, l, 0, p % bt, 0, kvDim, k, p * kvDim);
                    pool.read(block, l, 1, p % bt, 0, kvDim, v, p * kvDim);
                }
            });
        }

        @Override
        public float[] keyPage(final int layer, final int position)
        {
            return keys;
        }

        @Override
        public float[] valuePage(final int layer, final int position)
        {
            return values;
        }

        @Override
        public int offset(final int position)
        {
            return position * c.kvDim();
        }

        @Override
        public int pageTokens()
        {
            return Math.max(1, positions);
        }
    }
}
