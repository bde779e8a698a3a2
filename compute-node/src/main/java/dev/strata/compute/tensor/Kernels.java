package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.strata.compute.tensor.Vectors.LANES;
import static dev.strata.compute.tensor.Vectors.VECTOR_OK;

/**
 * Which kernels the matrix products use: the native integer kernels for the weight types they cover (with the
 * activations quantized to Q8_0 or Q8_K as ggml does), the Java Vector API kernels for everything else.
 * <p>
 * Chosen by the system property {@value #PROPERTY}: {@code native} (the default: the best instruction set this CPU
 * supports, or the Java kernels where the library or the CPU support is missing), {@code java}, or one instruction
 * set by name ({@code avx512vnni}, {@code avx512bw}, {@code avx2}), which must be supported.
 */
public final class Kernels
{
    /** The system property that selects the kernels. */
    public static final String PROPERTY = "strata.kernels";
    /** Its default. */
    public static final String DEFAULT = "native";
    /**
     * {@code false} keeps every weight in ggml's layout ({@link #prepare} changes nothing): to measure what the
     * repacked layout brings, or to rule it out. Default {@code true}.
     */
    public static final String REPACK_PROPERTY = "strata.kernels.repack";

    /**
     * {@code -Dstrata.attention=java} keeps the engine's attention on the Java loops where the native kernel exists
     * (for comparison; every node of a split deployment must make the same choice, as the two differ in the last bits).
     */
    public static final String ATTENTION_PROPERTY = "strata.attention";

    private final NativeKernels natives;
    private final String description;
    private final boolean repack;
    private final NativeAttention attention;

    private Kernels(final NativeKernels natives, final String description, final boolean repack)
    {
        this.natives = natives;
        this.repack = repack;
        this.attention = natives != null && natives.attendKv != null &&
            !"java".equals(System.getProperty(ATTENTION_PROPERTY)) ? new NativeAttention(natives) : null;
        this.description = description + (attention != null ? "; attention native" : "");
    }

    /**
     * The kernels that {@value #PROPERTY} names, repacking unless {@value #REPACK_PROPERTY} is {@code false} (read on
     * every call; the library is loaded once per JVM).
     */
    public static Kernels fromSystemProperties()
    {
        final Kernels k = of(System.getProperty(PROPERTY, DEFAULT));
        return Boolean.parseBoolean(System.getProperty(REPACK_PROPERTY, "true")) || k.natives == null ? k :
            new Kernels(k.natives, k.description + "; weights in ggml's layout (" + REPACK_PROPERTY + "=false)", false);
    }

    /**
     * The kernels {@code request} names: {@code java}, {@code native} or an instruction set.
     *
     * @throws IllegalArgumentException if an instruction set is named that this machine cannot run.
     */
    public static Kernels of(final String request)
    {
        if (request.equals("java"))
        {
            return java("selected by -D" + PROPERTY + "=java");
        }
        final Object selected = NativeKernels.select(request);
        if (selected instanceof NativeKernels natives)
        {
            final List<String> types = new ArrayList<>();
            final List<String> batched = new ArrayList<>();
            for (final GgmlType type : GgmlType.values())
            {
                if (natives.supports(type))
                {
                    types.add(type.name());
                }
                if (natives.supportsBatched(type))
                {
                    batched.add(type.name());
                }
            }
            if (natives.hasPanels())
            {
                batched.add("prompts of the other types");
            }
            return new Kernels(natives, "native " + natives.isa.symbolName + " for " + String.join(", ", types) +
                " (several tokens at once: " + (batched.isEmpty() ? "none" : String.join(", ", batched)) +
                (natives.repacksQ4_0() ? "; Q4_0 repacked by 16 rows" : "") + "); " + javaKernels() + " for the rest",
                true);
        }
        if (!request.equals("native"))
        {
            throw new IllegalArgumentException("invalid " + PROPERTY + "=" + request + ": " + selected);
        }
        return java("native kernels unavailable: " + selected);
    }

    /** The Java (Vector API) kernels only. */
    public static Kernels java()
    {
        return java("selected");
    }

    private static Kernels java(final String why)
    {
        return new Kernels(null, javaKernels() + " (" + why + ")", false);
    }

    private static String javaKernels()
    {
        return VECTOR_OK ? "Java Vector API " + LANES * 32 + "-bit" : "Java scalar";
    }

    /**
     * The native attention kernel, or null where this kernel set has none (the Java kernels) or
     * {@value #ATTENTION_PROPERTY} is {@code java}.
     */
    public NativeAttention attention()
    {
        return attention;
    }

    /** Whether native kernels are in use (for at least one weight type). */
    public boolean isNative()
    {
        return natives != null;
    }

    /** The instruction set of the native kernels ({@code avx512vnni}, ...), or {@code java}. */
    public String name()
    {
        return natives == null ? "java" : natives.isa.symbolName;
    }

    /** One line for logs and benchmark output: the kernel set and why. */
    public String describe()
    {
        return description;
    }

    /** The native kernels, if they cover {@code w} in its layout; otherwise null. */
    NativeKernels nativeFor(final WeightTensor w)
    {
        return natives != null && natives.supports(w) ? natives : null;
    }

    /**
     * {@code w} in the layout these kernels are fastest with: a Q4_0 matrix of at least 16 rows, on any native set, is
     * repacked by 16 rows ({@link Q4_0x16Tensor}: the same number of bytes); any other tensor is returned as is.
     * <p>
     * With {@code copyInto} null the bytes are rewritten in place, so {@code w}'s memory must be writable and used by
     * nothing that expects ggml's layout (a streamed unit's buffer). Otherwise the repacked tensor lives in a new
     * allocation from {@code copyInto} and {@code w}'s bytes are left alone (a read-only file mapping; its pages are
     * then never read again by the products, so the page cache may drop them).
     */
    public WeightTensor prepare(final WeightTensor w, final Arena copyInto)
    {
        if (!repack || natives == null || !natives.repacksQ4_0() || w.type() != GgmlType.Q4_0 ||
            w instanceof Q4_0x16Tensor || w.rows() < Q4_0x16Tensor.GROUP)
        {
            return w;
        }
        final MemorySegment bytes = w.data().asSlice(0, w.byteSize());
        if (copyInto == null)
        {
            natives.repack(bytes, w.rows(), w.cols());
            return new Q4_0x16Tensor(w.name(), bytes, w.rows(), w.cols());
        }
        final MemorySegment copy = copyInto.allocate(w.byteSize(), 64);
        natives.repack(bytes, copy, w.rows(), w.cols());
        return new Q4_0x16Tensor(w.name(), copy, w.rows(), w.cols());
    }

    /** The native kernels when they compute the blocked product's panels with {@code tp} packed tokens, else null. */
    NativeKernels nativePanels(final int tp)
    {
        return natives != null && natives.supportsPanels(tp) ? natives : null;
    }

    /** The native kernels, if they cover weights of {@code type}; otherwise null. */
    NativeKernels nativeFor(final GgmlType type)
    {
        return natives != null && natives.supports(type) ? natives : null;
    }

    @Override
    public String toString()
    {
        return description;
    }
}
