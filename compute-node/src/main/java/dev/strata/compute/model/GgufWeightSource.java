package dev.strata.compute.model;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.gguf.GgufTensorInfo;

import dev.strata.compute.tensor.Kernels;
import dev.strata.compute.tensor.WeightTensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.function.UnaryOperator;

/**
 * Weights straight from a memory-mapped GGUF file: every tensor is a view of the mapping (no copy), so
 * acquire/release cost nothing and the page cache is the memory tier. Shapes are checked against the
 * configuration up front, so a mismatched file fails at load with the tensor's name, not mid-generation.
 */
public final class GgufWeightSource implements WeightSource
{
    private final GgufFile file;
    private final boolean ownsFile;
    private final ModelConfig config;
    private final GlobalWeights globals;
    private final LayerWeights[] layers;
    /**
     * {@code -Dstrata.weights.copy=auto|true|false}: whether the matrices the kernels read in ggml's layout (all but
     * repacked Q4_0, which is copied anyway) are copied off the file's mapping onto huge pages, the mapped pages then
     * released as the repack does. {@code auto} (the default) copies when huge pages are on and the file takes at
     * most half of the memory available; {@code false} reads them from the page cache's small pages.
     */
    public static final String COPY_PROPERTY = "strata.weights.copy";

    /**
     * The repacked matrices ({@link Kernels#prepare}) and the copied ones, on huge pages
     * ({@link dev.strata.compute.tensor.HugePages}).
     */
    private final Arena arena = dev.strata.compute.tensor.HugePages.arena();
    private final Kernels kernels = Kernels.fromSystemProperties();

    /**
     * @param file     an open GGUF file.
     * @param ownsFile whether {@link #close()} closes the file.
     */
    public GgufWeightSource(final GgufFile file, final boolean ownsFile)
    {
        this.file = file;
        this.ownsFile = ownsFile;
        final GgufTensorInfo embd = file.tensor("token_embd.weight");
        if (embd == null)
        {
            throw new GgufFormatException("missing tensor token_embd.weight");
        }
        if (embd.shape().length != 2)
        {
            throw new GgufFormatException("token_embd.weight must be 2-D, has shape " + Arrays.toString(embd.shape()));
        }
        this.config = ModelConfig.fromMetadata(file.metadata(), Math.toIntExact(embd.shape()[1]));
        final WeightViews.Lookup lookup = name ->
        {
            final GgufTensorInfo info = file.tensor(name);
            return info == null ? null : new WeightViews.Tensor(info.type(), info.shape(), file.tensorData(info));
        };
        // the kernels' layout (Q4_0 repacked by the native sets): the file is mapped read-only, so a repacked matrix is
        // a copy in this source's arena, and the mapped pages it came from are released (the products never read them
        // again; the page cache keeps them as clean, reclaimable file pages): the process holds the weights once. The
        // other matrices of a huge page or more are copied there too ({@value #COPY_PROPERTY}): on huge pages, a decode
        // step's stream over them runs faster (1.1B Q8_0: 4-15%, three alternated rounds)
        final boolean copy = copyWeights(file.segment().byteSize());
        final UnaryOperator<WeightTensor> prepare = w ->
        {
            WeightTensor p = kernels.prepare(w, arena);
            if (p == w && copy && w.byteSize() >= dev.strata.compute.tensor.HugePages.SIZE)
            {
                final MemorySegment bytes = arena.allocate(w.byteSize(), 64);
                bytes.copyFrom(w.data().asSlice(0, w.byteSize()));
                p = WeightTensor.of(w.name(), w.type(), bytes, w.rows(), w.cols());
            }
            if (p != w)
            {
                releasePages(mappedBytes(file, w));
            }
            return p;
        };
        this.globals = WeightViews.map(WeightViews.globals(lookup, config), prepare);
        this.layers = new LayerWeights[config.layers()];
        for (int l = 0; l < layers.length; l++)
        {
            layers[l] = WeightViews.map(WeightViews.layer(lookup, config, l), prepare);
        }
    }

    /**
     * The mapped bytes {@code w} was viewed from: its tensor's, or for one expert of a 3-D expert tensor (named
     * {@code name[e]} by {@link WeightViews}) that expert's slice; null if the name leads nowhere.
     */
    private static MemorySegment mappedBytes(final GgufFile file, final WeightTensor w)
    {
        final String name = w.name();
        final GgufTensorInfo info = file.tensor(name);
        if (info != null)
        {
            return file.tensorData(info);
        }
        final int open = name.lastIndexOf('[');
        if (open > 0 && name.endsWith("]"))
        {
            final GgufTensorInfo experts = file.tensor(name.substring(0, open));
            if (experts != null)
            {
                final long e = Long.parseLong(name.substring(open + 1, name.length() - 1));
                return file.tensorData(experts).asSlice(e * w.byteSize(), w.byteSize());
            }
        }
        return null;
    }

    /** Whether a file of {@code fileBytes} has its matrices copied onto huge pages ({@value #COPY_PROPERTY}). */
    static boolean copyWeights(final long fileBytes)
    {
        final String v = System.getProperty(COPY_PROPERTY, "auto");
        final boolean huge = dev.strata.compute.tensor.HugePages.used(dev.strata.compute.tensor.HugePages.SIZE);
        return switch (v)
        {
            case "true" -> huge;
            case "false" -> false;
            case "auto" -> huge && fileBytes <= memoryAvailable() / 2;
            default -> throw new IllegalArgumentException(COPY_PROPERTY + " must be auto, true or false, not " + v);
        };
    }

    /** MemAvailable of {@code /proc/meminfo} in bytes; 0 where it cannot be read. */
    static long memoryAvailable()
    {
        try
        {
            for (final String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/meminfo")))
            {
                if (line.startsWith("MemAvailable:"))
                {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        }
        catch (final java.io.IOException | NumberFormatException e)
        {
            // not Linux, or no such line: no copy
        }
        return 0;
    }

    private static void releasePages(final MemorySegment mapped)
    {
        if (mapped != null && mapped.isMapped())
        {
            mapped.unload();
        }
    }

    public GgufFile file()
    {
        return file;
    }

    @Override
    public ModelConfig config()
    {
        return config;
    }

    @Override
    public GlobalWeights globals()
    {
        return globals;
    }

    @Override
    public LayerWeights acquire(final int layer)
    {
        return layers[layer];
    }

    @Override
    public void release(final int layer)
    {
    }

    @Override
    public void close()
    {
        arena.close();
        if (ownsFile)
        {
            file.close();
        }
    }
}
