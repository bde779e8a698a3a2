package dev.strata.compute.model;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.gguf.GgufTensorInfo;

import java.util.Arrays;

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
        this.globals = WeightViews.globals(lookup, config);
        this.layers = new LayerWeights[config.layers()];
        for (int l = 0; l < layers.length; l++)
        {
            layers[l] = WeightViews.layer(lookup, config, l);
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
        if (ownsFile)
        {
            file.close();
        }
    }
}
