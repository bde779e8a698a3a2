package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The native integer kernels (compute-node/src/main/c, packaged in the jar as
 * {@value #RESOURCE}), bound with the Foreign Function &amp; Memory API for one instruction set.
 * <p>
 * Every call is a downcall with {@link Linker.Option#critical(boolean) critical(true)}: the activations and the
 * outputs are Java arrays passed without copies (heap access is allowed for critical calls), and the calls are
 * short (one range of rows, well under a millisecond) and never call back into Java, as critical calls must be.
 * The weights are passed as their segment (a file mapping, or a heap array in tests).
 */
final class NativeKernels
{
    static final String RESOURCE = "/native/linux-x86_64/libstratakernels.so";

    /** Instruction sets with a kernel set in the library, best first; {@code bit} is strata_cpu_features()'s. */
    enum Isa
    {
        AVX512_VNNI("avx512vnni", 4, 16),
        AVX512_BW("avx512bw", 2, 16),
        AVX2("avx2", 1, 8);

        final String symbolName;
        final int bit;
        /** Floats in one of the set's vectors. */
        final int floatsPerVector;

        Isa(final String symbolName, final int bit, final int floatsPerVector)
        {
            this.symbolName = symbolName;
            this.bit = bit;
            this.floatsPerVector = floatsPerVector;
        }

        static Isa byName(final String name)
        {
            for (final Isa isa : values())
            {
                if (isa.symbolName.equals(name))
                {
                    return isa;
                }
            }
            return null;
        }
    }

    /** Activation quantization a weight type pairs with. */
    enum Q8
    {
        /** Blocks of 32, f16-rounded scale; aux = -bias * sums of 4. Pairs with Q4_0 (bias 8) and Q8_0 (128). */
        Q8_0(32, 4),
        /** Blocks of 256, f32 scale; aux = sums of 16 (bsums). Pairs with Q4_K and Q6_K. */
        Q8_K(256, 16);

        final int block;
        final int auxGroup;

        Q8(final int block, final int auxGroup)
        {
            this.block = block;
            this.auxGroup = auxGroup;
        }
    }

    private static final Linker LINKER = Linker.nativeLinker();
    private static final Linker.Option CRITICAL = Linker.Option.critical(true);
    private static final FunctionDescriptor QUANTIZE_Q8_0 =
        FunctionDescriptor.ofVoid(ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT);
    private static final FunctionDescriptor QUANTIZE_Q8_K =
        FunctionDescriptor.ofVoid(ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    private static final FunctionDescriptor PRODUCT = FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG, JAVA_LONG,
        JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);

    private static final FunctionDescriptor REPACK = FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG, JAVA_INT);
    private static final FunctionDescriptor REPACK_COPY =
        FunctionDescriptor.ofVoid(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT);

    private static final FunctionDescriptor PRODUCT_FLOAT = FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG, JAVA_LONG,
        JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);

    /** mm_f32_panel and mm_f16_panel: weights, offset, row bytes, rows, cols, xt, tp, acc, accumulate. */
    private static final FunctionDescriptor PANEL = FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG, JAVA_LONG,
        JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_INT);

    private static final FunctionDescriptor ATTEND_KV = FunctionDescriptor.ofVoid(ADDRESS, JAVA_LONG, ADDRESS,
        JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
        JAVA_FLOAT, ADDRESS, ADDRESS, JAVA_INT);

    /** The library, loaded once per JVM, or the reason it could not be. */
    private static final Object LIBRARY = loadLibrary();

    final Isa isa;
    private final MethodHandle quantizeQ8_0;
    private final MethodHandle quantizeQ8_K;
    private final MethodHandle[] products = new MethodHandle[GgmlType.values().length];
    private final MethodHandle[] batched = new MethodHandle[GgmlType.values().length];
    /** F16 weights against float activations (not quantized): one token, and several (the same chains). */
    private final MethodHandle productF16;
    private final MethodHandle batchedF16;
    /** Q4_0 repacked by 16 rows ({@link Q4_0x16Tensor}): the layout change, and its products; null where absent. */
    private final MethodHandle repackQ4_0;
    private final MethodHandle repackCopyQ4_0;
    private final MethodHandle unpackQ4_0;
    private final MethodHandle productQ4_0x16;
    /** Attention of a row over a sequence's KV blocks in place ({@link NativeAttention}); null where absent. */
    final MethodHandle attendKv;
    /** Float weights against packed activations: the Java blocked product's chains ({@link #panel}). */
    private final MethodHandle panelF32;
    private final MethodHandle panelF16;

    private NativeKernels(final Isa isa, final SymbolLookup lookup)
    {
        this.isa = isa;
        this.quantizeQ8_0 = bind(lookup, "quantize_q8_0", QUANTIZE_Q8_0);
        this.quantizeQ8_K = bind(lookup, "quantize_q8_k", QUANTIZE_Q8_K);
        products[GgmlType.Q4_0.ordinal()] = bind(lookup, "mv_q4_0", PRODUCT);
        products[GgmlType.Q8_0.ordinal()] = bind(lookup, "mv_q8_0", PRODUCT);
        products[GgmlType.Q4_K.ordinal()] = bind(lookup, "mv_q4_k", PRODUCT);
        products[GgmlType.Q6_K.ordinal()] = bind(lookup, "mv_q6_k", PRODUCT);
        productF16 = bind(lookup, "mv_f16", PRODUCT_FLOAT);
        batchedF16 = bind(lookup, "mm_f16", PRODUCT_FLOAT);
        batched[GgmlType.Q4_0.ordinal()] = bind(lookup, "mm_q4_0", PRODUCT);
        batched[GgmlType.Q8_0.ordinal()] = bind(lookup, "mm_q8_0", PRODUCT);
        batched[GgmlType.Q4_K.ordinal()] = bind(lookup, "mm_q4_k", PRODUCT);
        batched[GgmlType.Q6_K.ordinal()] = bind(lookup, "mm_q6_k", PRODUCT);
        repackQ4_0 = bind(lookup, "repack_q4_0", REPACK);
        repackCopyQ4_0 = bind(lookup, "repack_q4_0_copy", REPACK_COPY);
        unpackQ4_0 = bind(lookup, "unpack_q4_0", REPACK);
        // one kernel for one token or many, in every set (VNNI in 512-bit lanes, AVX-512 BW and AVX2 in two 256-bit
        // halves of a group)
        productQ4_0x16 = bind(lookup, "mm_q4_0r", PRODUCT);
        attendKv = bind(lookup, "attend_kv", ATTEND_KV);
        panelF32 = bind(lookup, "mm_f32_panel", PANEL);
        panelF16 = bind(lookup, "mm_f16_panel", PANEL);
    }

    private MethodHandle bind(final SymbolLookup lookup, final String kernel, final FunctionDescriptor descriptor)
    {
        return lookup.find("strata_" + isa.symbolName + "_" + kernel)
            .map(address -> LINKER.downcallHandle(address, descriptor, CRITICAL))
            .orElse(null);
    }

    /**
     * The kernels for {@code request} ({@code native}: the best set this CPU supports; or an instruction set's
     * name), or a {@link String} saying why there are none.
     */
    static Object select(final String request)
    {
        if (!(LIBRARY instanceof SymbolLookup lookup))
        {
            return LIBRARY;
        }
        final int features;
        try
        {
            features = (int)LINKER.downcallHandle(lookup.find("strata_cpu_features").orElseThrow(),
                FunctionDescriptor.of(JAVA_INT)).invokeExact();
        }
        catch (final Throwable t)
        {
            return "the CPU feature check failed: " + t;
        }
        if (request.equals("native"))
        {
            for (final Isa isa : Isa.values())
            {
                if ((features & isa.bit) != 0)
                {
                    return new NativeKernels(isa, lookup);
                }
            }
            return "this CPU has none of AVX-512 VNNI, AVX-512 BW, AVX2+FMA";
        }
        final Isa isa = Isa.byName(request);
        if (isa == null)
        {
            return "unknown kernel set '" + request + "'";
        }
        if ((features & isa.bit) == 0)
        {
            return "this CPU does not support " + request;
        }
        return new NativeKernels(isa, lookup);
    }

    private static Object loadLibrary()
    {
        final String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        final String arch = System.getProperty("os.arch", "");
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64")))
        {
            return "no native kernels for " + os + " " + arch + " (Linux x86-64 only)";
        }
        try (InputStream in = NativeKernels.class.getResourceAsStream(RESOURCE))
        {
            if (in == null)
            {
                return "the jar has no native kernel library (built without a C compiler)";
            }
            // dlopen needs a file; once loaded the mapping outlives it, so no temporary file is left behind
            final Path file = Files.createTempFile("strata-kernels-", ".so");
            try
            {
                Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
                return SymbolLookup.libraryLookup(file, Arena.global());
            }
            finally
            {
                Files.deleteIfExists(file);
            }
        }
        catch (final IOException | RuntimeException e)
        {
            return "the native kernel library could not be loaded: " + e;
        }
    }

    /** Whether this kernel set has a product for weights of {@code type} (in ggml's layout). */
    boolean supports(final GgmlType type)
    {
        return type == GgmlType.F16 ? productF16 != null : products[type.ordinal()] != null;
    }

    /** Whether this kernel set has products for {@code w} in its layout (ggml's, or repacked). */
    boolean supports(final WeightTensor w)
    {
        return w instanceof Q4_0x16Tensor ? productQ4_0x16 != null : supports(w.type);
    }

    /**
     * Whether a prompt's product with {@code w} runs faster on the float panels ({@link #panel}) than on this set's
     * batched kernel: F16 on every set, and Q4_0 (in ggml's layout) and Q8_0 on the sets without VNNI, whose batched
     * kernels are the single-token dot chains (kept for their bits: on a Zen 3, 1.1B Q8_0 prefill of 128 tokens ran at
     * 33-35 tok/s on them against 50-56 on the panels). The batched kernel still serves where bits must not depend on
     * the batch ({@link MatOps#batchInvariant}).
     */
    boolean panelsFaster(final WeightTensor w)
    {
        if (w.type == GgmlType.F16)
        {
            return true;
        }
        return isa != Isa.AVX512_VNNI && !(w instanceof Q4_0x16Tensor) &&
            (w.type == GgmlType.Q4_0 || w.type == GgmlType.Q8_0);
    }

    /** Whether Q4_0 weights are faster with this set once repacked ({@link #repack}). */
    boolean repacksQ4_0()
    {
        return productQ4_0x16 != null && repackQ4_0 != null && repackCopyQ4_0 != null;
    }

    /**
     * Rewrites the whole 16-row groups of Q4_0 weights ({@code rows x cols}, ggml's layout) in {@code data} into
     * {@link Q4_0x16Tensor}'s layout, in place.
     */
    void repack(final MemorySegment data, final int rows, final int cols)
    {
        try
        {
            repackQ4_0.invokeExact(data, (long)rows, cols);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native repack failed", e);
        }
    }

    /** As {@link #repack}, from {@code src} (left alone) into {@code dst} of the same size, in one pass. */
    void repack(final MemorySegment src, final MemorySegment dst, final int rows, final int cols)
    {
        try
        {
            repackCopyQ4_0.invokeExact(src, dst, (long)rows, cols);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native repack failed", e);
        }
    }

    /** The inverse of {@link #repack}. */
    void unpack(final MemorySegment data, final int rows, final int cols)
    {
        try
        {
            unpackQ4_0.invokeExact(data, (long)rows, cols);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native unpack failed", e);
        }
    }

    /**
     * Rows a thread's share of {@code w}'s products must start at a multiple of: 16 for a repacked tensor, 6 for the
     * batched F16 kernel (its tiles are 6 rows on AVX-512 and 3 on AVX2), 4 for the other batched kernels, else 1.
     */
    int rowGranule(final WeightTensor w, final int tokens)
    {
        if (w instanceof Q4_0x16Tensor)
        {
            return Q4_0x16Tensor.GROUP;
        }
        if (w.type == GgmlType.F16 && tokens > 1)
        {
            return 6;
        }
        return tokens > 1 || w.type == GgmlType.F16 ? 4 : 1;
    }

    /** Whether this set has {@link #panel}. */
    boolean hasPanels()
    {
        return panelF32 != null;
    }

    /** Whether {@link #panel} and {@link #panelFloats} take activations packed {@code tp} tokens wide. */
    boolean supportsPanels(final int tp)
    {
        return panelF32 != null && tp % isa.floatsPerVector == 0;
    }

    /** Whether {@link #panel} reads {@code type}'s weights in place (F32 and F16; the others go by {@link #panelFloats}). */
    boolean panelsInPlace(final GgmlType type)
    {
        return type == GgmlType.F32 ? panelF32 != null : type == GgmlType.F16 && panelF16 != null;
    }

    /**
     * The Java blocked product's panel ({@code MatOps.matmul}) for F32 or F16 weights read in place: {@code acc[i * tp +
     * t] = sum over k of W[r0 + i][k] * xt[k * tp + t]} for {@code i < rows} and {@code t < tp}, each a chain from zero
     * with one FMA per k in k order, so the same bits as the Java kernels' lanes.
     */
    void panel(final WeightTensor w, final int r0, final int rows, final float[] xt, final int tp, final float[] acc)
    {
        try
        {
            (w.type == GgmlType.F32 ? panelF32 : panelF16).invokeExact(w.data, r0 * w.rowBytes, w.rowBytes, rows,
                w.cols, MemorySegment.ofArray(xt), tp, MemorySegment.ofArray(acc), 0);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native panel product failed for " + w.name, e);
        }
    }

    /**
     * As {@link #panel} for one column block of weights already dequantized into {@code wp} ({@code rows} rows of
     * {@code kn} floats, {@code ws} apart), against {@code xt} from {@code xo}: the chains continue from {@code acc}
     * when {@code accumulate}, else start from zero.
     */
    void panelFloats(final float[] wp, final int ws, final int rows, final int kn, final float[] xt, final int xo,
        final int tp, final float[] acc, final boolean accumulate)
    {
        try
        {
            panelF32.invokeExact(MemorySegment.ofArray(wp), 0L, 4L * ws, rows, kn,
                MemorySegment.ofArray(xt).asSlice(4L * xo), tp, MemorySegment.ofArray(acc), accumulate ? 1 : 0);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native panel product failed", e);
        }
    }

    /** Whether products with {@code type} take the activations as floats (no {@link #quantize} first). */
    static boolean floatActivations(final GgmlType type)
    {
        return type == GgmlType.F16;
    }

    /**
     * {@code out[outOffset + t * outStride + r - r0] = W[r] . x[t * cols ..]} for F16 weights, rows {@code [r0, r1)}
     * and tokens {@code [0, tokens)}. Each (row, token) is one float chain whatever the token count, so a token gets
     * the same bits alone and in a batch.
     */
    void productFloat(final WeightTensor w, final int r0, final int r1, final float[] x, final int tokens,
        final float[] out, final int outOffset, final int outStride)
    {
        productFloat(w, r0, r1, MemorySegment.ofArray(x), tokens, out, outOffset, outStride);
    }

    /**
     * As {@link #productFloat(WeightTensor, int, int, float[], int, float[], int, int)} with the activations in
     * {@code x}, a heap or native segment; the batched kernel is fastest with them 64-byte aligned (it reads each
     * vector of them twice, and split loads cost it a quarter of its speed).
     */
    void productFloat(final WeightTensor w, final int r0, final int r1, final MemorySegment x, final int tokens,
        final float[] out, final int outOffset, final int outStride)
    {
        final MethodHandle kernel = tokens > 1 && batchedF16 != null ? batchedF16 : productF16;
        try
        {
            kernel.invokeExact(w.data, r0 * w.rowBytes, w.rowBytes, r1 - r0, w.cols, x,
                tokens, MemorySegment.ofArray(out), outOffset, outStride);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native product failed for " + w.name, e);
        }
    }

    /**
     * Whether this kernel set has a batched product for {@code type} (several tokens per pass over a group of weight
     * rows). Without one, several tokens are better served by the Java tiled product than by one native dot per row
     * and token (measured: 1.1B Q4_0 prefill of 128 tokens, 12-14 tok/s that way against 22-67 on the Java path).
     */
    boolean supportsBatched(final GgmlType type)
    {
        return type == GgmlType.F16 ? batchedF16 != null : batched[type.ordinal()] != null;
    }

    /** As {@link #supportsBatched(GgmlType)} for {@code w} in its layout. */
    boolean supportsBatched(final WeightTensor w)
    {
        return w instanceof Q4_0x16Tensor ? productQ4_0x16 != null : supportsBatched(w.type);
    }

    /**
     * Whether products with weights of types {@code a} and {@code b} read the same quantized activations: the K-quants
     * share Q8_K; Q4_0 and Q8_0 share Q8_0 blocks but not the aux sums (their bias differs).
     */
    static boolean sameActivations(final GgmlType a, final GgmlType b)
    {
        return a == b || q8For(a) == Q8.Q8_K && q8For(b) == Q8.Q8_K;
    }

    static Q8 q8For(final GgmlType type)
    {
        return type == GgmlType.Q4_K || type == GgmlType.Q6_K ? Q8.Q8_K : Q8.Q8_0;
    }

    /**
     * Quantizes tokens {@code [t0, t1)} of {@code x} ({@code cols} floats each) into {@code a}, for products with
     * weights of {@code type}.
     */
    void quantize(final GgmlType type, final float[] x, final int cols, final int t0, final int t1,
        final Activations a)
    {
        final Q8 q8 = q8For(type);
        final int blocks = cols / q8.block;
        final int auxes = cols / q8.auxGroup;
        try
        {
            for (int t = t0; t < t1; t++)
            {
                final MemorySegment xs = MemorySegment.ofArray(x).asSlice(4L * t * cols, 4L * cols);
                final MemorySegment qs = a.qs.asSlice((long)t * cols);
                final MemorySegment d = a.d.asSlice(4L * t * blocks);
                final MemorySegment aux = a.aux.asSlice(4L * t * auxes);
                if (q8 == Q8.Q8_0)
                {
                    quantizeQ8_0.invokeExact(xs, cols, qs, d, aux, type == GgmlType.Q4_0 ? 8 : 128);
                }
                else
                {
                    quantizeQ8_K.invokeExact(xs, cols, qs, d, aux);
                }
            }
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native quantize failed", e);
        }
    }

    /**
     * {@code out[outOffset + t * outStride + r - r0] = W[r] . a[t]} for rows {@code [r0, r1)} and tokens
     * {@code [0, tokens)}: the batched kernel for several tokens where there is one, else a dot per row and token.
     */
    void product(final WeightTensor w, final int r0, final int r1, final Activations a, final int tokens,
        final float[] out, final int outOffset, final int outStride)
    {
        final MethodHandle kernel;
        if (w instanceof Q4_0x16Tensor)
        {
            kernel = productQ4_0x16;
        }
        else
        {
            final MethodHandle batchedKernel = batched[w.type.ordinal()];
            kernel = tokens > 1 && batchedKernel != null ? batchedKernel : products[w.type.ordinal()];
        }
        try
        {
            kernel.invokeExact(w.data, r0 * w.rowBytes, w.rowBytes, r1 - r0, w.cols, a.qs, a.d,
                a.aux, tokens, MemorySegment.ofArray(out), outOffset, outStride);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("native product failed for " + w.name, e);
        }
    }

    /** Quantized activations for a few tokens, as Java arrays (grown on demand, reused across products). */
    static final class Activations
    {
        private byte[] qsArray = new byte[0];
        private float[] dArray = new float[0];
        private int[] auxArray = new int[0];
        MemorySegment qs = MemorySegment.ofArray(qsArray);
        MemorySegment d = MemorySegment.ofArray(dArray);
        MemorySegment aux = MemorySegment.ofArray(auxArray);

        /** Makes room for {@code tokens} rows of {@code cols} values; aux needs at most cols/4 per token. */
        void ensure(final int tokens, final int cols)
        {
            final int n = tokens * cols;
            if (qsArray.length < n)
            {
                qsArray = new byte[n];
                dArray = new float[n / 32];
                auxArray = new int[n / 4];
                qs = MemorySegment.ofArray(qsArray);
                d = MemorySegment.ofArray(dArray);
                aux = MemorySegment.ofArray(auxArray);
            }
        }

        byte[] qs()
        {
            return qsArray;
        }

        float[] d()
        {
            return dArray;
        }

        int[] aux()
        {
            return auxArray;
        }
    }
}
