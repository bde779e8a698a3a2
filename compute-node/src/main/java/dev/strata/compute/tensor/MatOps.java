package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static dev.strata.compute.tensor.Vectors.F;
import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Matrix products of weights with activations, parallel over output rows.
 * <ul>
 * <li>{@link #matvec}: one token (decode); each row's stored bytes are read once and dotted with {@code x}.</li>
 * <li>{@link #matmul} of 2 to {@value #SMALL_BATCH_TOKENS} tokens (a batched decode step): dot products, 4 dequantized
 * rows x 4 tokens per kernel call with k along the lanes ({@link #matmulDots}).</li>
 * <li>{@link #matmul} of more tokens (prefill): a blocked matrix-matrix product. The activations are packed
 * once per product, transposed ({@code k}-major, tokens padded to whole vectors). Each thread takes panels of
 * {@value #PANEL_ROWS} weight rows and walks the columns in blocks of {@value #K_BLOCK}: the panel's block is
 * dequantized into a float scratch (64 KB, in L1/L2), then a register-blocked kernel of {@value #TILE_ROWS} rows x
 * 4 vectors of tokens broadcasts one weight to 4 FMAs and keeps 16 accumulators in registers. Partial sums live in a
 * per-panel accumulator (rows x tokens) across the column blocks. Dequantization costs once per batch, no horizontal
 * reductions are needed, and the activations stream once per panel rather than once per few rows.</li>
 * </ul>
 * Where its {@link Kernels} have native kernels for the weight type, both go to them instead: the activations are
 * quantized to int8 blocks once (F16: kept as floats, copied 64-byte aligned), then each thread's row ranges are one
 * native call each ({@link NativeKernels}); a batch of tokens goes native only where the set has a batched kernel for
 * the type. Otherwise a prompt's panels still run natively where the set has the panel kernel (the same chains, so
 * the same bits; F32 and F16 weights read in place, the others from the dequantized blocks), and the prompts whose
 * panels are faster than the batched kernel ({@link NativeKernels#panelsFaster}: F16, and Q4_0 and Q8_0 on a set
 * without VNNI) take that path too unless {@link #batchInvariant} is on.
 */
public final class MatOps
{
    static final int TILE_ROWS = 4;
    /** Columns per block: a multiple of every block size (K-quants: 256). */
    static final int K_BLOCK = 256;
    static final int PANEL_ROWS = 64;
    /**
     * Chunks per thread of a single-token product: on this VM's 2 vCPUs (whose speed dips when a neighbour is busy),
     * claimed chunks cut the time threads wait at the barrier (JFR: 22% to 19% of decode samples).
     */
    static final int DECODE_CHUNKS_PER_THREAD = 4;
    /** Dynamic load balancing for the long batched products. */
    static final int PREFILL_CHUNKS_PER_THREAD = 4;

    /**
     * Most tokens of a product that runs as dot products ({@link #matmulDots}) rather than the blocked product: a
     * decode step of a few sequences would leave most lanes of the blocked kernel's token vectors empty, and its
     * per-panel dequantization is paid for few tokens. One core, Q8_0 2048 x 2048, best of 60 (weight-token products
     * per second): dots 10 / 27-38 / 33-46 / 48-50 / 51-53 G at 2 / 4 / 8 / 32 / 64 tokens, the blocked product
     * 4.6 / 9 / 18 / 38 / 45 G at 2 / 4 / 8 / 32 / 65 and 54-56 G at 128.
     */
    static final int SMALL_BATCH_TOKENS = 64;

    /** Lanes of the vectors {@link #accumulate4x4} works in, or 0 when this machine runs the scalar code. */
    public static final int KERNEL_LANES = VECTOR_OK ? LANES : 0;

    private final ThreadPool pool;
    private final Kernels kernels;
    /** Quantized activations of the current native product; written by the caller, read by the workers. */
    private final NativeKernels.Activations activations = new NativeKernels.Activations();
    /** Per calling thread: a 64-byte aligned native copy of a product's float activations ({@link #aligned}). */
    private final ThreadLocal<MemorySegment[]> alignedActivations =
        ThreadLocal.withInitial(() -> new MemorySegment[] {MemorySegment.NULL});
    /** Whether products must give a token the same bits whatever the batch (see {@link #batchInvariant(boolean)}). */
    private volatile boolean batchInvariant;
    /** Per thread: {@value #TILE_ROWS} dequantized weight rows for {@link #matmulDots}. */
    private final ThreadLocal<float[][]> rowScratch = ThreadLocal.withInitial(() -> new float[1][0]);
    private final ThreadLocal<float[][]> scratch = ThreadLocal.withInitial(() -> new float[][] {
        new float[PANEL_ROWS * K_BLOCK], new float[0]});
    /** The activations of the current {@link #matmul}, transposed; shared read-only by the threads. */
    private float[] packed = new float[0];

    /** Products on {@code pool} with the kernels that {@link Kernels#fromSystemProperties()} selects. */
    public MatOps(final ThreadPool pool)
    {
        this(pool, Kernels.fromSystemProperties());
    }

    public MatOps(final ThreadPool pool, final Kernels kernels)
    {
        this.pool = pool;
        this.kernels = kernels;
    }

    public Kernels kernels()
    {
        return kernels;
    }

    public ThreadPool pool()
    {
        return pool;
    }

    /** {@code out[r] = W[r] . x} for every row r of {@code w}. */
    public void matvec(final WeightTensor w, final float[] x, final float[] out)
    {
        final NativeKernels natives = kernels.nativeFor(w);
        if (natives != null)
        {
            nativeProduct(natives, w, x, 1, out);
            return;
        }
        pool.parallelFor(w.rows(), DECODE_CHUNKS_PER_THREAD, (start, end) ->
        {
            for (int r = start; r < end; r++)
            {
                out[r] = w.dot(r, x, 0);
            }
        });
    }

    /**
     * {@code out[t * rows + r] = W[r] . x[t * cols ..]} for {@code tokens} tokens: the activations are
     * {@code tokens x cols} and the result {@code tokens x rows}, both row-major.
     */
    public void matmul(final WeightTensor w, final float[] x, final int tokens, final float[] out)
    {
        if (tokens == 1)
        {
            matvec(w, x, out);
            return;
        }
        final NativeKernels natives = kernels.nativeFor(w);
        final int rows = w.rows();
        final int cols = w.cols();
        final int tp = (tokens + LANES - 1) / LANES * LANES;
        // a prompt's blocked product (below) runs its panels natively where the set has them
        final NativeKernels nativePanels = VECTOR_OK && tokens > SMALL_BATCH_TOKENS ? kernels.nativePanels(tp) : null;
        if (natives != null && batchedNative(natives, w, tokens))
        {
            nativeProduct(natives, w, x, tokens, out);
            return;
        }
        if (VECTOR_OK && tokens <= SMALL_BATCH_TOKENS)
        {
            matmulDots(w, x, tokens, out);
            return;
        }
        if (!VECTOR_OK)
        {
            pool.parallelFor(rows, (start, end) ->
            {
                final float[] row = new float[cols];
                for (int r = start; r < end; r++)
                {
                    w.dequantizeRow(r, row, 0);
                    for (int t = 0; t < tokens; t++)
                    {
                        out[t * rows + r] = dot(row, 0, x, t * cols, cols);
                    }
                }
            });
            return;
        }
        final float[] xt = pack(x, tokens, cols, tp);
        final int panels = (rows + PANEL_ROWS - 1) / PANEL_ROWS;
        // the same panel chains natively (same bits, wider tiles): F32 and F16 weights read in place, other types from
        // the dequantized column blocks
        final boolean inPlace = nativePanels != null && nativePanels.panelsInPlace(w.type());
        pool.parallelFor(panels, PREFILL_CHUNKS_PER_THREAD, (start, end) ->
        {
            final float[][] s = scratch.get();
            final float[] wp = s[0];
            if (s[1].length < PANEL_ROWS * tp)
            {
                s[1] = new float[PANEL_ROWS * tp];
            }
            final float[] acc = s[1];
            for (int panel = start; panel < end; panel++)
            {
                final int p0 = panel * PANEL_ROWS;
                final int np = Math.min(PANEL_ROWS, rows - p0);
                if (inPlace)
                {
                    nativePanels.panel(w, p0, np, xt, tp, acc);
                }
                else
                {
                    if (nativePanels == null)
                    {
                        Arrays.fill(acc, 0, np * tp, 0f);
                    }
                    for (int k0 = 0; k0 < cols; k0 += K_BLOCK)
                    {
                        final int kn = Math.min(K_BLOCK, cols - k0);
                        for (int i = 0; i < np; i++)
                        {
                            w.dequantize(p0 + i, k0, kn, wp, i * K_BLOCK);
                        }
                        if (nativePanels != null)
                        {
                            nativePanels.panelFloats(wp, K_BLOCK, np, kn, xt, k0 * tp, tp, acc, k0 > 0);
                        }
                        else
                        {
                            block(wp, np, kn, xt, k0 * tp, tp, acc);
                        }
                    }
                }
                for (int t = 0; t < tokens; t++)
                {
                    final int o = t * rows + p0;
                    for (int i = 0; i < np; i++)
                    {
                        out[o + i] = acc[i * tp + t];
                    }
                }
            }
        });
    }

    /**
     * The products of several matrices with one input ({@code x}, {@code tokens} rows of {@code cols}), such as the
     * query, key and value projections: {@code outs[i]} as {@link #matmul} of {@code ws[i]} would write it. Where the
     * native kernels take all of them with one activation format, the activations are quantized once and the rows of
     * all the matrices are shared out in one parallel loop (one fork and join instead of one per matrix; the small
     * matrices no longer leave a thread idle at their own join). Each output row is computed by the same kernel call
     * on the same bits as by {@link #matmul}, so the results are identical.
     */
    public void matmuls(final WeightTensor[] ws, final float[] x, final int tokens, final float[][] outs)
    {
        final NativeKernels natives = fusable(ws, tokens);
        if (natives == null)
        {
            for (int i = 0; i < ws.length; i++)
            {
                matmul(ws[i], x, tokens, outs[i]);
            }
            return;
        }
        final NativeKernels.Activations a = quantize(natives, ws[0], x, tokens);
        final int[] granules = new int[ws.length];
        final int[] firstUnit = new int[ws.length + 1];
        for (int i = 0; i < ws.length; i++)
        {
            granules[i] = natives.rowGranule(ws[i], tokens);
            firstUnit[i + 1] = firstUnit[i] + (ws[i].rows() + granules[i] - 1) / granules[i];
        }
        pool.parallelFor(firstUnit[ws.length], tokens == 1 ? DECODE_CHUNKS_PER_THREAD : PREFILL_CHUNKS_PER_THREAD,
            (start, end) ->
            {
                for (int i = 0; i < ws.length; i++)
                {
                    final int s = Math.max(start, firstUnit[i]) - firstUnit[i];
                    final int e = Math.min(end, firstUnit[i + 1]) - firstUnit[i];
                    if (s < e)
                    {
                        final WeightTensor w = ws[i];
                        final int g = granules[i];
                        natives.product(w, g * s, Math.min(w.rows(), g * e), a, tokens, outs[i], g * s, w.rows());
                    }
                }
            });
    }

    /**
     * The feed-forward's gate and up products and SwiGLU ({@code gate[i] = silu(gate[i]) * up[i]}) over {@code tokens}
     * rows of {@code x}: where the native kernels take both matrices, one parallel loop in which each share of rows
     * gets its gate and up products and then its SwiGLU (one activation quantization, one fork and join instead of
     * three). The products are {@link #matmul}'s and SwiGLU is elementwise, so the results are identical.
     */
    public void swigluProducts(final WeightTensor gateW, final WeightTensor upW, final float[] x, final int tokens,
        final float[] gate, final float[] up)
    {
        final int ffn = gateW.rows();
        final WeightTensor[] ws = {gateW, upW};
        final NativeKernels natives = upW.rows() == ffn ? fusable(ws, tokens) : null;
        if (natives == null || natives.rowGranule(gateW, tokens) != natives.rowGranule(upW, tokens))
        {
            matmul(gateW, x, tokens, gate);
            matmul(upW, x, tokens, up);
            pool.parallelFor(tokens, (t0, t1) -> swiglu(gate, up, t0 * ffn, (t1 - t0) * ffn));
            return;
        }
        final NativeKernels.Activations a = quantize(natives, gateW, x, tokens);
        final int g = natives.rowGranule(gateW, tokens);
        pool.parallelFor((ffn + g - 1) / g, tokens == 1 ? DECODE_CHUNKS_PER_THREAD : PREFILL_CHUNKS_PER_THREAD,
            (start, end) ->
            {
                final int r0 = g * start;
                final int r1 = Math.min(ffn, g * end);
                natives.product(gateW, r0, r1, a, tokens, gate, r0, ffn);
                natives.product(upW, r0, r1, a, tokens, up, r0, ffn);
                for (int t = 0; t < tokens; t++)
                {
                    swiglu(gate, up, t * ffn + r0, r1 - r0);
                }
            });
    }

    /**
     * Whether a prompt of {@code tokens} tokens goes to the native panels rather than to the set's batched kernel for
     * {@code w}: where the panels are faster ({@link NativeKernels#panelsFaster}: F16; Q4_0 and Q8_0 without VNNI),
     * unless the batched kernel's bits are needed (with {@link #batchInvariant}, a token must get the same bits in a
     * prompt as alone).
     */
    private boolean panelsFaster(final NativeKernels natives, final WeightTensor w, final int tokens)
    {
        return VECTOR_OK && tokens > SMALL_BATCH_TOKENS && !batchInvariant && natives.panelsFaster(w) &&
            kernels.nativePanels((tokens + LANES - 1) / LANES * LANES) != null;
    }

    /** Whether {@code tokens} rows times {@code w} run on the native integer kernels, else on the Java ones (tests). */
    boolean onNativeKernels(final WeightTensor w, final int tokens)
    {
        final NativeKernels natives = kernels.nativeFor(w);
        return natives != null && (tokens == 1 || batchedNative(natives, w, tokens));
    }

    /**
     * Whether a product of several tokens with {@code w} goes to the set's batched kernel: where it has one, unless
     * the panels are faster ({@link #panelsFaster}).
     */
    private boolean batchedNative(final NativeKernels natives, final WeightTensor w, final int tokens)
    {
        return natives.supportsBatched(w) && !panelsFaster(natives, w, tokens);
    }

    /**
     * The native kernels if they take every matrix of {@code ws} with quantized activations of one format (and, for
     * several tokens, with a batched kernel that {@link #batchedNative} takes) and the matrices have one row length;
     * otherwise null.
     */
    private NativeKernels fusable(final WeightTensor[] ws, final int tokens)
    {
        final NativeKernels natives = kernels.nativeFor(ws[0]);
        if (natives == null || NativeKernels.floatActivations(ws[0].type()))
        {
            return null;
        }
        for (final WeightTensor w : ws)
        {
            if (kernels.nativeFor(w) != natives || w.cols() != ws[0].cols() ||
                !NativeKernels.sameActivations(w.type(), ws[0].type()) ||
                (tokens > 1 && !batchedNative(natives, w, tokens)))
            {
                return null;
            }
        }
        return natives;
    }

    /** {@code x}'s {@code tokens} rows quantized for products with {@code w}'s type (in parallel over tokens). */
    private NativeKernels.Activations quantize(final NativeKernels natives, final WeightTensor w, final float[] x,
        final int tokens)
    {
        final NativeKernels.Activations a = activations;
        final int cols = w.cols();
        a.ensure(tokens, cols);
        if (tokens == 1)
        {
            natives.quantize(w.type(), x, cols, 0, 1, a);
        }
        else
        {
            pool.parallelFor(tokens, (start, end) -> natives.quantize(w.type(), x, cols, start, end, a));
        }
        return a;
    }

    /**
     * The native integer product: the activations are quantized once (in parallel over tokens when there are
     * several), then each thread multiplies ranges of weight rows by all the tokens in one native call per range.
     * Several tokens go here only where the kernel set has a batched kernel for the type; otherwise through the Java
     * tiled product ({@link #matmul}).
     */
    private void nativeProduct(final NativeKernels natives, final WeightTensor w, final float[] x, final int tokens,
        final float[] out)
    {
        final int rows = w.rows();
        final int cols = w.cols();
        if (NativeKernels.floatActivations(w.type()))
        {
            // whole tiles of rows per share (the kernel takes 4 rows at a time, the rest one by one); several tokens'
            // activations copied once to a cache-line-aligned buffer, which the batched kernel reads fastest
            final int granule = natives.rowGranule(w, tokens);
            final int units = (rows + granule - 1) / granule;
            final MemorySegment xs = tokens == 1 ? MemorySegment.ofArray(x) : aligned(x, tokens * cols);
            pool.parallelFor(units, tokens == 1 ? DECODE_CHUNKS_PER_THREAD : PREFILL_CHUNKS_PER_THREAD,
                (start, end) -> natives.productFloat(w, granule * start, Math.min(rows, granule * end), xs, tokens,
                    out, granule * start, rows));
            return;
        }
        final NativeKernels.Activations a = quantize(natives, w, x, tokens);
        // each share of rows starts where the kernel's row groups do (repacked: 16 rows; batched: 4)
        final int granule = natives.rowGranule(w, tokens);
        final int units = (rows + granule - 1) / granule;
        pool.parallelFor(units, tokens == 1 ? DECODE_CHUNKS_PER_THREAD : PREFILL_CHUNKS_PER_THREAD,
            (start, end) -> natives.product(w, granule * start, Math.min(rows, granule * end), a, tokens, out,
                granule * start, rows));
    }

    /**
     * A product of a few tokens (a batched decode step) as dot products: each thread dequantizes {@value #TILE_ROWS}
     * weight rows at a time into a float scratch (in L1/L2) and dots them with 4 tokens at a time, k along the
     * vector lanes ({@link #dot4x4}), so that no lane is padding whatever the token count.
     */
    private void matmulDots(final WeightTensor w, final float[] x, final int tokens, final float[] out)
    {
        final int rows = w.rows();
        final int cols = w.cols();
        final int tiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
        pool.parallelFor(tiles, DECODE_CHUNKS_PER_THREAD, (start, end) ->
        {
            final float[][] s = rowScratch.get();
            if (s[0].length < TILE_ROWS * cols)
            {
                s[0] = new float[TILE_ROWS * cols];
            }
            final float[] wr = s[0];
            for (int tile = start; tile < end; tile++)
            {
                final int r0 = tile * TILE_ROWS;
                final int nr = Math.min(TILE_ROWS, rows - r0);
                for (int i = 0; i < nr; i++)
                {
                    w.dequantizeRow(r0 + i, wr, i * cols);
                }
                int t0 = 0;
                if (nr == TILE_ROWS)
                {
                    for (; t0 + 4 <= tokens; t0 += 4)
                    {
                        dot4x4(wr, cols, x, t0 * cols, out, t0 * rows + r0, rows);
                    }
                }
                for (int t = t0; t < tokens; t++)
                {
                    for (int i = 0; i < nr; i++)
                    {
                        out[t * rows + r0 + i] = dot(wr, i * cols, x, t * cols, cols);
                    }
                }
            }
        });
    }

    /**
     * {@code out[oo + t*os + r] = w[r*n ..] . x[xo + t*n ..]} for 4 rows and 4 tokens of length {@code n}: per vector
     * of k, 4 weight and 4 activation loads feed 16 FMAs into 16 accumulators, reduced once at the end.
     */
    static void dot4x4(final float[] w, final int n, final float[] x, final int xo, final float[] out, final int oo,
        final int os)
    {
        FloatVector c00 = FloatVector.zero(F);
        FloatVector c01 = FloatVector.zero(F);
        FloatVector c02 = FloatVector.zero(F);
        FloatVector c03 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F);
        FloatVector c11 = FloatVector.zero(F);
        FloatVector c12 = FloatVector.zero(F);
        FloatVector c13 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F);
        FloatVector c21 = FloatVector.zero(F);
        FloatVector c22 = FloatVector.zero(F);
        FloatVector c23 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F);
        FloatVector c31 = FloatVector.zero(F);
        FloatVector c32 = FloatVector.zero(F);
        FloatVector c33 = FloatVector.zero(F);
        final int bound = n - n % LANES;
        for (int k = 0; k < bound; k += LANES)
        {
            final FloatVector w0 = FloatVector.fromArray(F, w, k);
            final FloatVector w1 = FloatVector.fromArray(F, w, n + k);
            final FloatVector w2 = FloatVector.fromArray(F, w, 2 * n + k);
            final FloatVector w3 = FloatVector.fromArray(F, w, 3 * n + k);
            FloatVector v = FloatVector.fromArray(F, x, xo + k);
            c00 = w0.fma(v, c00);
            c10 = w1.fma(v, c10);
            c20 = w2.fma(v, c20);
            c30 = w3.fma(v, c30);
            v = FloatVector.fromArray(F, x, xo + n + k);
            c01 = w0.fma(v, c01);
            c11 = w1.fma(v, c11);
            c21 = w2.fma(v, c21);
            c31 = w3.fma(v, c31);
            v = FloatVector.fromArray(F, x, xo + 2 * n + k);
            c02 = w0.fma(v, c02);
            c12 = w1.fma(v, c12);
            c22 = w2.fma(v, c22);
            c32 = w3.fma(v, c32);
            v = FloatVector.fromArray(F, x, xo + 3 * n + k);
            c03 = w0.fma(v, c03);
            c13 = w1.fma(v, c13);
            c23 = w2.fma(v, c23);
            c33 = w3.fma(v, c33);
        }
        final float[] c = {
            Lanes.sum(c00), Lanes.sum(c10),
            Lanes.sum(c20), Lanes.sum(c30),
            Lanes.sum(c01), Lanes.sum(c11),
            Lanes.sum(c21), Lanes.sum(c31),
            Lanes.sum(c02), Lanes.sum(c12),
            Lanes.sum(c22), Lanes.sum(c32),
            Lanes.sum(c03), Lanes.sum(c13),
            Lanes.sum(c23), Lanes.sum(c33)};
        for (int k = bound; k < n; k++)
        {
            for (int t = 0; t < 4; t++)
            {
                for (int r = 0; r < 4; r++)
                {
                    c[t * 4 + r] += w[r * n + k] * x[xo + t * n + k];
                }
            }
        }
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 4; r++)
            {
                out[oo + t * os + r] = c[t * 4 + r];
            }
        }
    }

    /**
     * With batch invariance on, a token's product has the same bits in a prompt as alone or in a decode batch where
     * the kernels allow it: prompts then use the batched native kernels (the single-token chains) even where the
     * panels are faster (F16; Q4_0 and Q8_0 without VNNI). Q4_0 and Q8_0 batches of up to 64 tokens, and K-quant
     * batches of any size, are batch-invariant either way; the Java kernels are not.
     */
    public void batchInvariant(final boolean on)
    {
        this.batchInvariant = on;
    }

    /** {@code x[0, n)} copied into this thread's 64-byte aligned native buffer (grown as needed; freed by the GC). */
    private MemorySegment aligned(final float[] x, final int n)
    {
        final MemorySegment[] holder = alignedActivations.get();
        if (holder[0].byteSize() < 4L * n)
        {
            holder[0] = Arena.ofAuto().allocate(4L * n, 64);
        }
        final MemorySegment s = holder[0];
        MemorySegment.copy(x, 0, s, ValueLayout.JAVA_FLOAT, 0, n);
        return s;
    }

    /** {@code xt[k * tp + t] = x[t * cols + k]}, zero for the padding tokens {@code t >= tokens}. */
    private float[] pack(final float[] x, final int tokens, final int cols, final int tp)
    {
        if (packed.length < cols * tp)
        {
            packed = new float[cols * tp];
        }
        final float[] xt = packed;
        pool.parallelFor(cols, (start, end) ->
        {
            for (int k0 = start; k0 < end; k0 += 16)
            {
                final int k1 = Math.min(end, k0 + 16);
                for (int t = 0; t < tokens; t++)
                {
                    final int xo = t * cols;
                    for (int k = k0; k < k1; k++)
                    {
                        xt[k * tp + t] = x[xo + k];
                    }
                }
                for (int k = k0; k < k1; k++)
                {
                    Arrays.fill(xt, k * tp + tokens, (k + 1) * tp, 0f);
                }
            }
        });
        return xt;
    }

    /** Adds the product of a dequantized column block {@code wp} ({@code np x kn}, stride K_BLOCK) into {@code acc}. */
    private static void block(final float[] wp, final int np, final int kn, final float[] xt, final int xo,
        final int tp, final float[] acc)
    {
        final int fullTiles = np / TILE_ROWS;
        for (int tile = 0; tile < fullTiles; tile++)
        {
            final int r = tile * TILE_ROWS;
            int t = 0;
            for (; t + 4 * LANES <= tp; t += 4 * LANES)
            {
                accumulate4x4(wp, r * K_BLOCK, K_BLOCK, kn, xt, xo + t, tp, acc, r * tp + t, tp);
            }
            for (; t < tp; t += LANES)
            {
                kernel4x1(wp, r * K_BLOCK, kn, xt, xo + t, tp, acc, r * tp + t);
            }
        }
        for (int r = fullTiles * TILE_ROWS; r < np; r++)
        {
            for (int t = 0; t < tp; t += LANES)
            {
                kernel1x1(wp, r * K_BLOCK, kn, xt, xo + t, tp, acc, r * tp + t);
            }
        }
    }

    /**
     * The register-blocked kernel of the batched products (here and in prompt attention):
     * {@code acc[ao + r*as + j*LANES + i] += sum over k < kn of w[wo + r*ws + k] * x[xo + k*xs + j*LANES + i]}
     * for 4 rows {@code r} and 4 vectors {@code j}. Per {@code k}, 4 vector loads and 4 broadcasts feed 16 FMAs;
     * the 16 accumulators stay in registers and no horizontal sum is needed.
     */
    public static void accumulate4x4(final float[] w, final int wo, final int ws, final int kn, final float[] x,
        final int xo, final int xs, final float[] acc, final int ao, final int as)
    {
        final int a1 = ao + as;
        final int a2 = a1 + as;
        final int a3 = a2 + as;
        FloatVector c00 = FloatVector.fromArray(F, acc, ao);
        FloatVector c01 = FloatVector.fromArray(F, acc, ao + LANES);
        FloatVector c02 = FloatVector.fromArray(F, acc, ao + 2 * LANES);
        FloatVector c03 = FloatVector.fromArray(F, acc, ao + 3 * LANES);
        FloatVector c10 = FloatVector.fromArray(F, acc, a1);
        FloatVector c11 = FloatVector.fromArray(F, acc, a1 + LANES);
        FloatVector c12 = FloatVector.fromArray(F, acc, a1 + 2 * LANES);
        FloatVector c13 = FloatVector.fromArray(F, acc, a1 + 3 * LANES);
        FloatVector c20 = FloatVector.fromArray(F, acc, a2);
        FloatVector c21 = FloatVector.fromArray(F, acc, a2 + LANES);
        FloatVector c22 = FloatVector.fromArray(F, acc, a2 + 2 * LANES);
        FloatVector c23 = FloatVector.fromArray(F, acc, a2 + 3 * LANES);
        FloatVector c30 = FloatVector.fromArray(F, acc, a3);
        FloatVector c31 = FloatVector.fromArray(F, acc, a3 + LANES);
        FloatVector c32 = FloatVector.fromArray(F, acc, a3 + 2 * LANES);
        FloatVector c33 = FloatVector.fromArray(F, acc, a3 + 3 * LANES);
        for (int k = 0; k < kn; k++)
        {
            final int xi = xo + k * xs;
            final FloatVector x0 = FloatVector.fromArray(F, x, xi);
            final FloatVector x1 = FloatVector.fromArray(F, x, xi + LANES);
            final FloatVector x2 = FloatVector.fromArray(F, x, xi + 2 * LANES);
            final FloatVector x3 = FloatVector.fromArray(F, x, xi + 3 * LANES);
            FloatVector b = FloatVector.broadcast(F, w[wo + k]);
            c00 = x0.fma(b, c00);
            c01 = x1.fma(b, c01);
            c02 = x2.fma(b, c02);
            c03 = x3.fma(b, c03);
            b = FloatVector.broadcast(F, w[wo + ws + k]);
            c10 = x0.fma(b, c10);
            c11 = x1.fma(b, c11);
            c12 = x2.fma(b, c12);
            c13 = x3.fma(b, c13);
            b = FloatVector.broadcast(F, w[wo + 2 * ws + k]);
            c20 = x0.fma(b, c20);
            c21 = x1.fma(b, c21);
            c22 = x2.fma(b, c22);
            c23 = x3.fma(b, c23);
            b = FloatVector.broadcast(F, w[wo + 3 * ws + k]);
            c30 = x0.fma(b, c30);
            c31 = x1.fma(b, c31);
            c32 = x2.fma(b, c32);
            c33 = x3.fma(b, c33);
        }
        c00.intoArray(acc, ao);
        c01.intoArray(acc, ao + LANES);
        c02.intoArray(acc, ao + 2 * LANES);
        c03.intoArray(acc, ao + 3 * LANES);
        c10.intoArray(acc, a1);
        c11.intoArray(acc, a1 + LANES);
        c12.intoArray(acc, a1 + 2 * LANES);
        c13.intoArray(acc, a1 + 3 * LANES);
        c20.intoArray(acc, a2);
        c21.intoArray(acc, a2 + LANES);
        c22.intoArray(acc, a2 + 2 * LANES);
        c23.intoArray(acc, a2 + 3 * LANES);
        c30.intoArray(acc, a3);
        c31.intoArray(acc, a3 + LANES);
        c32.intoArray(acc, a3 + 2 * LANES);
        c33.intoArray(acc, a3 + 3 * LANES);
    }

    /** 4 weight rows x 1 vector of tokens, for the tokens left after the 4-vector groups. */
    private static void kernel4x1(final float[] wp, final int wo, final int kn, final float[] xt, final int xo,
        final int tp, final float[] acc, final int ao)
    {
        FloatVector c0 = FloatVector.fromArray(F, acc, ao);
        FloatVector c1 = FloatVector.fromArray(F, acc, ao + tp);
        FloatVector c2 = FloatVector.fromArray(F, acc, ao + 2 * tp);
        FloatVector c3 = FloatVector.fromArray(F, acc, ao + 3 * tp);
        for (int k = 0; k < kn; k++)
        {
            final FloatVector v = FloatVector.fromArray(F, xt, xo + k * tp);
            c0 = v.fma(FloatVector.broadcast(F, wp[wo + k]), c0);
            c1 = v.fma(FloatVector.broadcast(F, wp[wo + K_BLOCK + k]), c1);
            c2 = v.fma(FloatVector.broadcast(F, wp[wo + 2 * K_BLOCK + k]), c2);
            c3 = v.fma(FloatVector.broadcast(F, wp[wo + 3 * K_BLOCK + k]), c3);
        }
        c0.intoArray(acc, ao);
        c1.intoArray(acc, ao + tp);
        c2.intoArray(acc, ao + 2 * tp);
        c3.intoArray(acc, ao + 3 * tp);
    }

    /** 1 weight row x 1 vector of tokens, for the rows left after the 4-row tiles. */
    private static void kernel1x1(final float[] wp, final int wo, final int kn, final float[] xt, final int xo,
        final int tp, final float[] acc, final int ao)
    {
        FloatVector c = FloatVector.fromArray(F, acc, ao);
        for (int k = 0; k < kn; k++)
        {
            c = FloatVector.fromArray(F, xt, xo + k * tp).fma(FloatVector.broadcast(F, wp[wo + k]), c);
        }
        c.intoArray(acc, ao);
    }

    /** Float dot product of {@code a[ao .. ao+n)} and {@code b[bo .. bo+n)}. */
    public static float dot(final float[] a, final int ao, final float[] b, final int bo, final int n)
    {
        int i = 0;
        float sum = 0f;
        if (VECTOR_OK)
        {
            FloatVector acc = FloatVector.zero(F);
            final int upper = F.loopBound(n);
            for (; i < upper; i += LANES)
            {
                acc = FloatVector.fromArray(F, a, ao + i).fma(FloatVector.fromArray(F, b, bo + i), acc);
            }
            sum = Lanes.sum(acc);
        }
        for (; i < n; i++)
        {
            sum += a[ao + i] * b[bo + i];
        }
        return sum;
    }

    /** SwiGLU in place: {@code gate[i] = silu(gate[i]) * up[i]} for {@code i} in {@code [from, from+n)}. */
    public static void swiglu(final float[] gate, final float[] up, final int from, final int n)
    {
        int i = from;
        final int end = from + n;
        if (VECTOR_OK)
        {
            final int upper = from + F.loopBound(n);
            for (; i < upper; i += LANES)
            {
                final FloatVector g = FloatVector.fromArray(F, gate, i);
                final FloatVector silu = g.div(Exp.of(g.neg()).add(1f));
                silu.mul(FloatVector.fromArray(F, up, i)).intoArray(gate, i);
            }
        }
        for (; i < end; i++)
        {
            final float g = gate[i];
            gate[i] = g / (1f + Exp.scalar(-g)) * up[i];
        }
    }

    /** {@code y[yo .. yo+n) += a * x[xo .. xo+n)}. */
    public static void axpy(final float a, final float[] x, final int xo, final float[] y, final int yo, final int n)
    {
        int i = 0;
        if (VECTOR_OK)
        {
            final int upper = F.loopBound(n);
            for (; i < upper; i += LANES)
            {
                FloatVector.fromArray(F, x, xo + i).fma(FloatVector.broadcast(F, a), FloatVector.fromArray(F, y, yo + i)).intoArray(y, yo + i);
            }
        }
        for (; i < n; i++)
        {
            y[yo + i] += a * x[xo + i];
        }
    }
}
