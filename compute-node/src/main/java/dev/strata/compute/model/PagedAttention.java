package dev.strata.compute.model;

import dev.strata.compute.tensor.NativeAttention;
import dev.strata.compute.tensor.ThreadPool;

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
 * Where the native attention kernel is there ({@link NativeAttention}), it takes every row of both kinds, batch-invariant
 * or not: one task per row (or per share of its key-value heads when the rows are fewer than the threads), reading the
 * keys and values in place from the pool's blocks (no copy into floats). So a row attends with the same bits in a
 * decode step, in any batch, and in a prefill.
 */
final class PagedAttention
{
    /** Rows from which a segment is gathered and attended as a prompt chunk. */
    static final int GATHER_ROWS = 4;

    final KvBlockPool pool;
    private final Llama llama;
    private final ModelConfig c;
    /** A prompt chunk's sequence, gathered by all threads. */
    private final FloatPage gathered = new FloatPage();
    /** Per thread: a decode segment's sequence, and its scores. */
    private final ThreadLocal<FloatPage> pages = ThreadLocal.withInitial(FloatPage::new);
    private final ThreadLocal<float[]> scores = ThreadLocal.withInitial(() -> new float[0]);
    private int[] small = new int[0];
    /** Native path: the first task of each segment (a task: a row, or a share of its heads). */
    private int[] nativeFirstTask = new int[1];

    PagedAttention(final Llama llama, final KvBlockPool pool)
    {
        this.llama = llama;
        this.pool = pool;
        this.c = llama.config();
    }

    /** Writes {@code att} for every row of {@code segs} from {@code q}, at layer {@code l}. */
    void run(final int l, final ForwardBatch.Segment[] segs, final float[] q, final float[] att)
    {
        final NativeAttention na = llama.nativeAttention();
        if (na != null)
        {
            runNative(na, l, segs, q, att);
            return;
        }
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
                gathered.fill(threads, l, s.blockTable(), s.endPos());
                llama.attention(l, s.row0(), s.rows(), s.startPos(), gathered);
            }
        }
    }

    /**
     * {@link #run} with the native kernel, for every row of every segment: a prompt chunk too, batch-invariant or not,
     * since row by row in place it is faster than the gathered blocked products (1.1B Q4_0, one thread, 256- and
     * 2,000-token prompts: 1.0-1.26x; two threads at 2,000 tokens: 1.14-1.18x).
     */
    private void runNative(final NativeAttention na, final int l, final ForwardBatch.Segment[] segs, final float[] q,
        final float[] att)
    {
        final int kvHeads = c.kvHeads();
        final ThreadPool threads = llama.pool();
        if (nativeFirstTask.length < segs.length + 1)
        {
            nativeFirstTask = new int[segs.length + 1];
        }
        int rows = 0;
        for (final ForwardBatch.Segment s : segs)
        {
            rows += s.rows();
        }
        // a task is one row's key-value heads, or a share of them when the rows are fewer than the threads
        final int parts = rows >= threads.threads() ? 1 : Math.min(kvHeads, threads.threads());
        for (int k = 0; k < segs.length; k++)
        {
            nativeFirstTask[k + 1] = nativeFirstTask[k] + segs[k].rows() * parts;
        }
        final int tasks = nativeFirstTask[segs.length];
        if (tasks > 0)
        {
            final int[] first = nativeFirstTask;
            final int hs = c.headSize();
            final int group = c.heads() / kvHeads;
            final float scale = (float)(1.0 / Math.sqrt(hs));
            final int elementBytes = pool.type().bytes();
            threads.parallelFor(tasks, tasks == 1 ? 1 : 4, (start, end) ->
            {
                int k = 0;
                for (int task = start; task < end; task++)
                {
                    while (first[k + 1] <= task)
                    {
                        k++;
                    }
                    final ForwardBatch.Segment s = segs[k];
                    final int t = (task - first[k]) / parts;
                    final int part = (task - first[k]) % parts;
                    final int kv0 = kvHeads * part / parts;
                    final int kv1 = kvHeads * (part + 1) / parts;
                    final int n = s.startPos() + t + 1;
                    final int need = NativeAttention.scratchFloats(kv1 - kv0, group, n);
                    float[] sc = scores.get();
                    if (sc.length < need)
                    {
                        sc = new float[2 * need];
                        scores.set(sc);
                    }
                    final int row = (s.row0() + t) * c.qDim();
                    na.attend(pool.segment(), pool.blockBytes(), s.blockTable(), pool.blockTokens(), c.kvDim(),
                        elementBytes, l, q, row, group, kv0, kv1, hs, n, scale, sc, att, row);
                }
            });
        }
    }

    /** Every query head of the rows of {@code s}, over its keys and values of layer {@code l}. */
    private void attendSegment(final int l, final ForwardBatch.Segment s, final float[] q, final float[] att)
    {
        final int hs = c.headSize();
        final int group = c.heads() / c.kvHeads();
        final float scale = (float)(1.0 / Math.sqrt(hs));
        final FloatPage page = pages.get();
        page.fill(null, l, s.blockTable(), s.endPos());
        float[] sc = scores.get();
        if (sc.length < group * s.endPos())
        {
            sc = new float[group * Math.max(s.endPos(), 256) * 2];
            scores.set(sc);
        }
        for (int t = 0; t < s.rows(); t++)
        {
            for (int kvh = 0; kvh < c.kvHeads(); kvh++)
            {
                Llama.attendGroup(page, l, q, (s.row0() + t) * c.qDim() + kvh * group * hs, group, kvh * hs,
                    s.startPos() + t, hs, scale, sc, att);
            }
        }
    }

    /**
     * One sequence's keys and values of one layer as a single float page ({@code positions x kvDim}), read from its
     * blocks a block at a time (a block's positions are contiguous in its layout).
     */
    private final class FloatPage implements KvPages
    {
        private float[] keys = new float[0];
        private float[] values = new float[0];
        private int positions;

        /** Reads positions {@code [0, positions)} of layer {@code l}; on {@code threads} when given, else here. */
        void fill(final ThreadPool threads, final int l, final int[] table, final int positions)
        {
            final int kvDim = c.kvDim();
            final int bt = pool.blockTokens();
            this.positions = positions;
            if (keys.length < positions * kvDim)
            {
                final int cap = Math.max(positions, 256) * 2;
                keys = new float[cap * kvDim];
                values = new float[cap * kvDim];
            }
            final float[] k = keys;
            final float[] v = values;
            final int blocks = pool.blocksFor(positions);
            final ThreadPool.RangeTask read = (b0, b1) ->
            {
                for (int b = b0; b < b1; b++)
                {
                    final int p0 = b * bt;
                    final int n = Math.min(bt, positions - p0);
                    pool.read(table[b], l, 0, 0, 0, n * kvDim, k, p0 * kvDim);
                    pool.read(table[b], l, 1, 0, 0, n * kvDim, v, p0 * kvDim);
                }
            };
            if (threads != null)
            {
                threads.parallelFor(blocks, read);
            }
            else
            {
                read.run(0, blocks);
            }
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
