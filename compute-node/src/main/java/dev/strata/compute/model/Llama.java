package dev.strata.compute.model;

import dev.strata.compute.tensor.AttentionOps;
import dev.strata.compute.tensor.MatOps;
import dev.strata.compute.tensor.NativeAttention;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tensor.WeightTensor;

/**
 * The Llama-family transformer forward pass (llama, mistral, qwen2): RMSNorm, RoPE, grouped-query attention
 * over a paged KV cache, SwiGLU, tied or separate classifier.
 * <p>
 * {@link #forward} runs a batch of consecutive tokens: prompt processing is matrix-matrix work over the
 * batch, decode is the batch of one. Weights come from a {@link WeightSource} one layer at a time.
 * Not thread-safe: one sequence step at a time per instance (buffers are reused).
 */
public final class Llama
{
    /** Chunks per thread of a batch's attention: even shares of (token, head) pairs are uneven work. */
    private static final int ATTENTION_CHUNKS_PER_THREAD = 16;

    private final WeightSource weights;
    private final ModelConfig c;
    private final MatOps ops;
    /** See {@link #nativeAttention()}: fixed with the kernels. */
    private final NativeAttention nativeAttention;
    private final int maxBatch;
    private volatile boolean batchInvariant;

    // activations, row-major (token, features)
    private final float[] x;      // (maxBatch, dim) residual stream
    private final float[] xb;     // (maxBatch, dim) normed input / projection output
    private final float[] q;      // (maxBatch, heads * headSize)
    private final float[] k;      // (maxBatch, kvDim)
    private final float[] v;      // (maxBatch, kvDim)
    private final float[][] qkv;  // {q, k, v}: the outputs of the fused projections
    private final float[] att;    // (maxBatch, heads * headSize) attention output
    private final float[] hb;     // (maxBatch, ffnDim) gate, then SwiGLU
    private final float[] hb2;    // (maxBatch, ffnDim) up
    private final float[] logits; // (vocab)
    private final int[] positions; // (maxBatch) position of each row
    private final float[] ropeCos;
    private final float[] ropeSin;
    private final float[] invFreq;
    private final ThreadLocal<float[]> scores = ThreadLocal.withInitial(() -> new float[0]);
    private final PrefillAttention prefillAttention = new PrefillAttention();
    // mixture of experts (null for a dense model)
    private final float[] routerLogits; // (maxBatch, experts)
    private final float[] moeOut;       // (maxBatch, dim) weighted sum of the chosen experts' outputs
    private final float[] expertIn;     // (dim) one token's normed input
    private final float[] expertGate;   // (ffnDim)
    private final float[] expertUp;     // (ffnDim)
    private final float[] expertOut;    // (dim)
    private RoutingListener routingListener;
    // batched steps (execute)
    private PagedAttention paged;
    private float[][] batchLogits = new float[0][];
    private float[] logitRows = new float[0];

    /** Sees every routing decision of a mixture-of-experts model (for access traces and expert prefetch). */
    @FunctionalInterface
    public interface RoutingListener
    {
        /** Token {@code token} of the batch was sent to {@code experts} (best first) in layer {@code layer}. */
        void routed(int layer, int token, int[] experts);
    }

    /**
     * @param weights  where the weights come from.
     * @param pool     threads for the matrix products and attention.
     * @param maxBatch most tokens one {@link #forward} call may take.
     */
    public Llama(final WeightSource weights, final ThreadPool pool, final int maxBatch)
    {
        if (maxBatch < 1)
        {
            throw new IllegalArgumentException("invalid maxBatch=" + maxBatch);
        }
        this.weights = weights;
        this.c = weights.config();
        this.ops = new MatOps(pool);
        final NativeAttention a = ops.kernels().attention();
        this.nativeAttention = a != null && NativeAttention.supports(c.headSize(), c.heads()) ? a : null;
        this.maxBatch = maxBatch;
        this.x = new float[maxBatch * c.dim()];
        this.xb = new float[maxBatch * c.dim()];
        this.q = new float[maxBatch * c.qDim()];
        this.k = new float[maxBatch * c.kvDim()];
        this.v = new float[maxBatch * c.kvDim()];
        this.qkv = new float[][]{q, k, v};
        this.att = new float[maxBatch * c.qDim()];
        this.hb = new float[maxBatch * c.ffnDim()];
        this.hb2 = new float[maxBatch * c.ffnDim()];
        this.logits = new float[c.vocabSize()];
        this.routerLogits = c.moe() ? new float[maxBatch * c.experts()] : null;
        this.moeOut = c.moe() ? new float[maxBatch * c.dim()] : null;
        this.expertIn = c.moe() ? new float[c.dim()] : null;
        this.expertGate = c.moe() ? new float[c.ffnDim()] : null;
        this.expertUp = c.moe() ? new float[c.ffnDim()] : null;
        this.expertOut = c.moe() ? new float[c.dim()] : null;
        final int half = c.ropeDims() / 2;
        this.positions = new int[maxBatch];
        this.ropeCos = new float[maxBatch * half];
        this.ropeSin = new float[maxBatch * half];
        this.invFreq = new float[half];
        for (int i = 0; i < half; i++)
        {
            invFreq[i] = (float)(1.0 / Math.pow(c.ropeTheta(), (2.0 * i) / c.ropeDims()));
        }
    }

    /** Sets who sees routing decisions (mixture-of-experts models); null for nobody. */
    public void routingListener(final RoutingListener listener)
    {
        this.routingListener = listener;
    }

    public ModelConfig config()
    {
        return c;
    }

    /** The threads this model's math runs on. */
    public ThreadPool pool()
    {
        return ops.pool();
    }

    public int maxBatch()
    {
        return maxBatch;
    }

    public WeightSource weights()
    {
        return weights;
    }

    /**
     * Runs tokens {@code tokens[from .. from+count)} at positions {@code startPos ..} and returns the logits of
     * the last one. The returned array is reused by the next call.
     */
    public float[] forward(final int[] tokens, final int from, final int count, final int startPos, final KvCache kv)
    {
        if (count < 1 || count > maxBatch)
        {
            throw new IllegalArgumentException("batch of " + count + " tokens (1.." + maxBatch + ")");
        }
        kv.ensureCapacity(startPos + count);
        for (int t = 0; t < count; t++)
        {
            positions[t] = startPos + t;
        }
        final int kvDim = c.kvDim();
        layers(tokens, from, count, new StepKv()
        {
            @Override
            public void store(final int l, final int n)
            {
                for (int t = 0; t < n; t++)
                {
                    final int pos = startPos + t;
                    System.arraycopy(k, t * kvDim, kv.keyPage(l, pos), kv.offset(pos), kvDim);
                    System.arraycopy(v, t * kvDim, kv.valuePage(l, pos), kv.offset(pos), kvDim);
                }
            }

            @Override
            public void attend(final int l, final int n)
            {
                attention(l, 0, n, startPos, kv);
            }
        });
        // final RMSNorm of the last token, then the classifier
        final int dim = c.dim();
        final GlobalWeights g = weights.globals();
        rmsnorm(xb, 0, x, (count - 1) * dim, g.outputNorm(), dim, c.rmsEps());
        ops.matvec(g.output(), xb, logits);
        return logits;
    }

    /**
     * Runs one step of many sequences (see {@link ForwardBatch}) whose keys and values live in {@code pool}, and
     * returns, for every segment that asks for them, the logits of its last row (null for the others). Each weight
     * matrix is read once for all rows of the step; attention runs per sequence over its blocks. The arrays are
     * reused by the next call.
     */
    public float[][] execute(final ForwardBatch batch, final KvBlockPool pool)
    {
        return execute(batch, pool, null);
    }

    /**
     * {@link #execute(ForwardBatch, KvBlockPool)}, calling {@code stored} (when not null) with each layer's index
     * as soon as that layer's keys and values of the step are in the pool's blocks, on this thread: a prefill node
     * sends a layer's blocks on while the later layers compute.
     */
    public float[][] execute(final ForwardBatch batch, final KvBlockPool pool, final java.util.function.IntConsumer stored)
    {
        final int n = batch.rows();
        if (n > maxBatch)
        {
            throw new IllegalArgumentException("step of " + n + " rows (1.." + maxBatch + ")");
        }
        final ForwardBatch.Segment[] segs = batch.segments();
        for (final ForwardBatch.Segment s : segs)
        {
            if (pool.blocksFor(s.endPos()) > s.blockTable().length)
            {
                throw new IllegalArgumentException("block table of " + s.blockTable().length + " blocks cannot " +
                    "hold " + s.endPos() + " positions");
            }
            if (s.endPos() > c.contextLength())
            {
                throw new IllegalArgumentException("position " + (s.endPos() - 1) + " beyond the context of " +
                    c.contextLength());
            }
            for (int t = 0; t < s.rows(); t++)
            {
                positions[s.row0() + t] = s.startPos() + t;
            }
        }
        if (paged == null || paged.pool != pool)
        {
            paged = new PagedAttention(this, pool);
        }
        final PagedAttention attention = paged;
        final int kvDim = c.kvDim();
        final int bt = pool.blockTokens();
        layers(batch.tokens(), 0, n, new StepKv()
        {
            @Override
            public void store(final int l, final int rows)
            {
                for (final ForwardBatch.Segment s : segs)
                {
                    for (int t = 0; t < s.rows(); t++)
                    {
                        final int pos = s.startPos() + t;
                        final int row = s.row0() + t;
                        pool.write(s.blockTable()[pos / bt], l, pos % bt, k, row * kvDim, v, row * kvDim);
                    }
                }
                if (stored != null)
                {
                    stored.accept(l);
                }
            }

            @Override
            public void attend(final int l, final int rows)
            {
                attention.run(l, segs, q, att);
            }
        });
        // the classifier over the rows whose logits are wanted
        final int dim = c.dim();
        final GlobalWeights g = weights.globals();
        int m = 0;
        for (final ForwardBatch.Segment s : segs)
        {
            if (s.logits())
            {
                rmsnorm(xb, m++ * dim, x, (s.row0() + s.rows() - 1) * dim, g.outputNorm(), dim, c.rmsEps());
            }
        }
        if (batchLogits.length < segs.length)
        {
            batchLogits = java.util.Arrays.copyOf(batchLogits, segs.length);
        }
        final float[][] out = new float[segs.length][];
        if (m > 0)
        {
            final int vocab = c.vocabSize();
            if (logitRows.length < m * vocab)
            {
                logitRows = new float[m * vocab];
            }
            ops.matmul(g.output(), xb, m, logitRows);
            int i = 0;
            for (int si = 0; si < segs.length; si++)
            {
                if (segs[si].logits())
                {
                    if (batchLogits[si] == null)
                    {
                        batchLogits[si] = new float[vocab];
                    }
                    System.arraycopy(logitRows, i++ * vocab, batchLogits[si], 0, vocab);
                    out[si] = batchLogits[si];
                }
            }
        }
        return out;
    }

    /** Where a step's keys and values go and how its attention reads them. */
    interface StepKv
    {
        /** Stores the keys and values of rows {@code [0, n)} ({@code k}, {@code v}) of layer {@code l}. */
        void store(int l, int n);

        /** Writes the attention output of rows {@code [0, n)} of layer {@code l} into {@code att}. */
        void attend(int l, int n);
    }

    /** Token embeddings of rows {@code [0, n)}, RoPE tables of their positions, then every layer. */
    private void layers(final int[] tokens, final int from, final int n, final StepKv kv)
    {
        final int dim = c.dim();
        for (int t = 0; t < n; t++)
        {
            final int token = tokens[from + t];
            if (token < 0 || token >= c.vocabSize())
            {
                throw new IllegalArgumentException("token id " + token + " outside the vocabulary [0, " +
                    c.vocabSize() + ")");
            }
            weights.globals().tokenEmbedding().dequantizeRow(token, x, t * dim);
        }
        ropeTables(n);
        for (int l = 0; l < c.layers(); l++)
        {
            final LayerWeights w = weights.acquire(l);
            try
            {
                layer(l, w, n, kv);
            }
            finally
            {
                weights.release(l);
            }
        }
    }

    private void layer(final int l, final LayerWeights w, final int n, final StepKv kv)
    {
        final int dim = c.dim();
        // attention: RMSNorm, q/k/v projections, RoPE, cache, attention, output projection, residual
        for (int t = 0; t < n; t++)
        {
            rmsnorm(xb, t * dim, x, t * dim, w.attnNorm(), dim, c.rmsEps());
        }
        // q, k and v in one parallel loop over the rows of the three matrices
        ops.matmuls(new WeightTensor[]{w.wq(), w.wk(), w.wv()}, xb, n, qkv);
        if (w.bq() != null)
        {
            addBias(q, w.bq(), n);
            addBias(k, w.bk(), n);
            addBias(v, w.bv(), n);
        }
        rope(q, c.heads(), n);
        rope(k, c.kvHeads(), n);
        kv.store(l, n);
        kv.attend(l, n);
        ops.matmul(w.wo(), att, n, xb);
        add(x, xb, n * dim);

        // feed-forward: RMSNorm, SwiGLU, down projection, residual
        for (int t = 0; t < n; t++)
        {
            rmsnorm(xb, t * dim, x, t * dim, w.ffnNorm(), dim, c.rmsEps());
        }
        if (w.router() != null)
        {
            mixtureOfExperts(l, w, n);
            add(x, moeOut, n * dim);
            return;
        }
        // gate and up products, then SwiGLU into hb, share by share of their rows
        ops.swigluProducts(w.wGate(), w.wUp(), xb, n, hb, hb2);
        ops.matmul(w.wDown(), hb, n, xb);
        add(x, xb, n * dim);
    }

    /**
     * Mixtral-style feed-forward: the router scores every expert, each token goes to the {@code expertsUsed} best,
     * whose SwiGLU outputs are summed with the softmax of their scores (renormalized over the chosen ones, as
     * llama.cpp does for Mixtral). Writes {@code moeOut}.
     */
    private void mixtureOfExperts(final int l, final LayerWeights w, final int n)
    {
        final int dim = c.dim();
        final int experts = c.experts();
        final int used = c.expertsUsed();
        ops.matmul(w.router(), xb, n, routerLogits);
        java.util.Arrays.fill(moeOut, 0, n * dim, 0f);
        // route every token first: a streaming source then fetches the union of the chosen experts at once
        final int[] chosen = new int[n * used];
        final float[] gates = new float[n * used];
        final boolean[] needed = new boolean[experts];
        for (int t = 0; t < n; t++)
        {
            final int base = t * experts;
            final int at = t * used;
            // top-k by score; ties go to the lower index
            for (int j = 0; j < used; j++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                {
                    boolean taken = false;
                    for (int i = 0; i < j; i++)
                    {
                        taken |= chosen[at + i] == e;
                    }
                    if (!taken && (best < 0 || routerLogits[base + e] > routerLogits[base + best]))
                    {
                        best = e;
                    }
                }
                chosen[at + j] = best;
                needed[best] = true;
            }
            // softmax over the chosen scores = softmax over all, renormalized over the chosen
            final float max = routerLogits[base + chosen[at]];
            double sum = 0;
            for (int j = 0; j < used; j++)
            {
                sum += Math.exp(routerLogits[base + chosen[at + j]] - max);
            }
            for (int j = 0; j < used; j++)
            {
                gates[at + j] = (float)(Math.exp(routerLogits[base + chosen[at + j]] - max) / sum);
            }
            if (routingListener != null)
            {
                routingListener.routed(l, t, java.util.Arrays.copyOfRange(chosen, at, at + used));
            }
        }
        final WeightTensor[] gate;
        final WeightTensor[] up;
        final WeightTensor[] down;
        if (w.expertGate() != null)
        {
            gate = w.expertGate();
            up = w.expertUp();
            down = w.expertDown();
        }
        else
        {
            int count = 0;
            for (final boolean b : needed)
            {
                count += b ? 1 : 0;
            }
            final int[] union = new int[count];
            for (int e = 0, i = 0; e < experts; e++)
            {
                if (needed[e])
                {
                    union[i++] = e;
                }
            }
            final WeightSource.ExpertWeights ew = weights.experts(l, union);
            gate = ew.gate();
            up = ew.up();
            down = ew.down();
        }
        for (int t = 0; t < n; t++)
        {
            System.arraycopy(xb, t * dim, expertIn, 0, dim);
            for (int j = 0; j < used; j++)
            {
                final int e = chosen[t * used + j];
                ops.matvec(gate[e], expertIn, expertGate);
                ops.matvec(up[e], expertIn, expertUp);
                MatOps.swiglu(expertGate, expertUp, 0, c.ffnDim());
                ops.matvec(down[e], expertGate, expertOut);
                final float g = gates[t * used + j];
                for (int i = 0; i < dim; i++)
                {
                    moeOut[t * dim + i] += g * expertOut[i];
                }
            }
        }
    }

    /**
     * Batch invariance: every query token attends through the same per-position loop ({@link #attendHead}), in a
     * prompt chunk as in decode, so a position's keys and values get the same bits however its sequence was batched
     * or chunked. With batch-invariant matrix products (the native Q4_0/Q8_0 kernels, and the batched F16 kernel, which
     * F16 prompts then use instead of the faster panels: {@link MatOps#batchInvariant}) a request prefilled again on
     * another node (a failover) continues with the tokens it would have had. Costs the blocked prefill attention:
     * about 8% of the prefill's arithmetic at 2,048 tokens on a 1.1B model runs slower.
     */
    public void batchInvariant(final boolean on)
    {
        this.batchInvariant = on;
        ops.batchInvariant(on);
    }

    boolean batchInvariant()
    {
        return batchInvariant;
    }

    /**
     * The native attention kernel for this model's heads, or null (Java kernels, no AVX-512, an unsupported head shape):
     * {@link PagedAttention} then attends with the Java loops.
     */
    NativeAttention nativeAttention()
    {
        return nativeAttention;
    }

    /**
     * Causal attention of every (token, head) of the batch over the cached positions, in parallel: whole tiles of
     * a prompt batch as blocked products ({@link PrefillAttention}), the rest (decode, a batch's last tokens)
     * position by position.
     */
    void attention(final int l, final int row0, final int n, final int startPos, final KvPages kv)
    {
        final int heads = c.heads();
        final int hs = c.headSize();
        final int group = heads / c.kvHeads();
        final float scale = (float)(1.0 / Math.sqrt(hs));
        int done = 0;
        if (!batchInvariant && PrefillAttention.supports(hs, n))
        {
            prefillAttention.run(ops.pool(), c, kv, l, q, att, row0, n, startPos);
            done = n - n % PrefillAttention.TILE;
        }
        if (done == n)
        {
            return;
        }
        final int first = done;
        // causal: a later token attends to more positions, so a batch is cut into many chunks claimed in turn
        ops.pool().parallelFor((n - first) * heads, n == 1 ? 1 : ATTENTION_CHUNKS_PER_THREAD, (start, end) ->
        {
            float[] s = scores.get();
            if (s.length < startPos + n)
            {
                s = new float[startPos + n];
                scores.set(s);
            }
            for (int i = start; i < end; i++)
            {
                final int t = first + i / heads;
                final int h = i % heads;
                final int pos = startPos + t;
                final int qo = (row0 + t) * c.qDim() + h * hs;
                attendHead(kv, l, q, qo, (h / group) * hs, pos, hs, scale, s, att);
            }
        });
    }

    /**
     * One query head ({@code q[qo .. qo+hs)}) over positions {@code [0, pos]} of {@code kv} at layer {@code l}, the
     * head's keys and values at {@code offset(p) + ko}: scaled scores, softmax, weighted sum of the values into
     * {@code att[qo ..]}. {@code s} holds at least {@code pos + 1} scores.
     */
    static void attendHead(final KvPages kv, final int l, final float[] q, final int qo, final int ko, final int pos,
        final int hs, final float scale, final float[] s, final float[] att)
    {
        attendGroup(kv, l, q, qo, 1, ko, pos, hs, scale, s, att);
    }

    /** Positions per block of {@link #attendGroup}: a block's keys of one head, 64 x 64 floats, are 16 KiB (L1). */
    static final int ATTENTION_BLOCK = 64;

    /**
     * The {@code g} query heads {@code q[qo + h * hs ..]} ({@code h < g}) that share the key-value head at
     * {@code ko} (grouped-query attention), over positions {@code [0, pos]}, into {@code att[qo + h * hs ..]}: each
     * head's output bit for bit what {@link MatOps#dot}, {@link dev.strata.compute.tensor.Exp#scalar} and
     * {@link MatOps#axpy} per position give. The positions go in blocks of {@value #ATTENTION_BLOCK}, each block's
     * keys (then values) read for all {@code g} heads in turn, so they come from memory or L3 once and from L1 for
     * the other heads (a 2,048-position layer of a 1.1B model holds 2 MiB of float keys, which one head at a time
     * read eight times over from L3). {@code s} holds at least {@code g * (pos + 1)} scores.
     */
    static void attendGroup(final KvPages kv, final int l, final float[] q, final int qo, final int g, final int ko,
        final int pos, final int hs, final float scale, final float[] s, final float[] att)
    {
        final int n = pos + 1;
        if (!AttentionOps.supports(hs))
        {
            for (int h = 0; h < g; h++)
            {
                attendPlain(kv, l, q, qo + h * hs, ko, pos, hs, scale, s, att);
            }
            return;
        }
        final int pageTokens = kv.pageTokens();
        final float[] max = new float[g];
        java.util.Arrays.fill(max, Float.NEGATIVE_INFINITY);
        for (int p0 = 0, p1; p0 < n; p0 = p1)
        {
            p1 = blockEnd(p0, n, pageTokens);
            final int o = kv.offset(p0);
            final int stride = p1 - p0 > 1 ? kv.offset(p0 + 1) - o : 0;
            final float[] keys = kv.keyPage(l, p0);
            for (int h = 0; h < g; h++)
            {
                max[h] = AttentionOps.scores(q, qo + h * hs, keys, o + ko, stride, p1 - p0, hs, scale, s, h * n + p0,
                    max[h]);
            }
        }
        for (int h = 0; h < g; h++)
        {
            final float inv = 1f / AttentionOps.expInPlace(s, h * n, n, max[h]);
            for (int p = h * n; p < (h + 1) * n; p++)
            {
                s[p] *= inv;
            }
        }
        java.util.Arrays.fill(att, qo, qo + g * hs, 0f);
        for (int p0 = 0, p1; p0 < n; p0 = p1)
        {
            p1 = blockEnd(p0, n, pageTokens);
            final int o = kv.offset(p0);
            final int stride = p1 - p0 > 1 ? kv.offset(p0 + 1) - o : 0;
            final float[] values = kv.valuePage(l, p0);
            for (int h = 0; h < g; h++)
            {
                AttentionOps.weightedSum(s, h * n + p0, p1 - p0, values, o + ko, stride, hs, att, qo + h * hs);
            }
        }
    }

    /** End of the block of positions from {@code p0}: {@value #ATTENTION_BLOCK} at most, within one page and n. */
    private static int blockEnd(final int p0, final int n, final int pageTokens)
    {
        return Math.min(Math.min(n, p0 + ATTENTION_BLOCK), (p0 / pageTokens + 1) * pageTokens);
    }

    /** {@link #attendHead} with the plain per-position loops (machines without vectors, odd head sizes). */
    private static void attendPlain(final KvPages kv, final int l, final float[] q, final int qo, final int ko,
        final int pos, final int hs, final float scale, final float[] s, final float[] att)
    {
        float max = Float.NEGATIVE_INFINITY;
        for (int p = 0; p <= pos; p++)
        {
            final float score = MatOps.dot(q, qo, kv.keyPage(l, p), kv.offset(p) + ko, hs) * scale;
            s[p] = score;
            max = Math.max(max, score);
        }
        final float inv = 1f / AttentionOps.expInPlace(s, 0, pos + 1, max);
        java.util.Arrays.fill(att, qo, qo + hs, 0f);
        for (int p = 0; p <= pos; p++)
        {
            MatOps.axpy(s[p] * inv, kv.valuePage(l, p), kv.offset(p) + ko, att, qo, hs);
        }
    }

    private void ropeTables(final int n)
    {
        final int half = invFreq.length;
        for (int t = 0; t < n; t++)
        {
            final int pos = positions[t];
            for (int i = 0; i < half; i++)
            {
                final float angle = pos * invFreq[i];
                ropeCos[t * half + i] = (float)Math.cos(angle);
                ropeSin[t * half + i] = (float)Math.sin(angle);
            }
        }
    }

    /** Rotates the first ropeDims dimensions of every head of every token. */
    private void rope(final float[] a, final int nHeads, final int n)
    {
        final int hs = c.headSize();
        final int half = invFreq.length;
        final boolean neox = c.ropeStyle() == ModelConfig.RopeStyle.NEOX;
        for (int t = 0; t < n; t++)
        {
            for (int h = 0; h < nHeads; h++)
            {
                final int base = (t * nHeads + h) * hs;
                for (int i = 0; i < half; i++)
                {
                    final float cos = ropeCos[t * half + i];
                    final float sin = ropeSin[t * half + i];
                    final int i0 = neox ? base + i : base + 2 * i;
                    final int i1 = neox ? base + i + half : base + 2 * i + 1;
                    final float v0 = a[i0];
                    final float v1 = a[i1];
                    a[i0] = v0 * cos - v1 * sin;
                    a[i1] = v0 * sin + v1 * cos;
                }
            }
        }
    }

    /** {@code out = x / rms(x) * weight} over {@code n} elements. */
    static void rmsnorm(final float[] out, final int oo, final float[] x, final int xo, final float[] weight,
        final int n, final float eps)
    {
        final float ss = MatOps.dot(x, xo, x, xo, n) / n + eps;
        final float inv = (float)(1.0 / Math.sqrt(ss));
        for (int i = 0; i < n; i++)
        {
            out[oo + i] = weight[i] * (inv * x[xo + i]);
        }
    }

    private static void addBias(final float[] a, final float[] bias, final int n)
    {
        final int w = bias.length;
        for (int t = 0; t < n; t++)
        {
            for (int i = 0; i < w; i++)
            {
                a[t * w + i] += bias[i];
            }
        }
    }

    private static void add(final float[] a, final float[] b, final int n)
    {
        for (int i = 0; i < n; i++)
        {
            a[i] += b[i];
        }
    }
}
