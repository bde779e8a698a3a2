package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;

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

    private final NativeKernels natives;
    private final String description;

    private Kernels(final NativeKernels natives, final String description)
    {
        this.natives = natives;
        this.description = description;
    }

    /** The kernels that {@value #PROPERTY} names (read on every call; the library is loaded once per JVM). */
    public static Kernels fromSystemProperties()
    {
        return of(System.getProperty(PROPERTY, DEFAULT));
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
            return new Kernels(natives, "native " + natives.isa.symbolName + " for " + String.join(", ", types) +
                " (several tokens at once: " + (batched.isEmpty() ? "none" : String.join(", ", batched)) + "); " +
                javaKernels() + " for the rest");
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
        return new Kernels(null, javaKernels() + " (" + why + ")");
    }

    private static String javaKernels()
    {
        return VECTOR_OK ? "Java Vector API " + LANES * 32 + "-bit" : "Java scalar";
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
