package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.tensor.WeightTensor;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
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
        final GgufTensorInfo embd = require("token_embd.weight");
        if (embd.shape().length != 2)
        {
            throw new GgufFormatException("token_embd.weight must be 2-D, has shape " + Arrays.toString(embd.shape()));
        }
        this.config = ModelConfig.fromMetadata(file.metadata(), Math.toIntExact(embd.shape()[1]));
        final int dim = config.dim();
        final WeightTensor embedding = matrix("token_embd.weight", config.vocabSize(), dim);
        final WeightTensor output = file.tensor("output.weight") != null ?
            matrix("output.weight", config.vocabSize(), dim) : embedding;
        this.globals = new GlobalWeights(embedding, vector("output_norm.weight", dim), output);
        this.layers = new LayerWeights[config.layers()];
        for (int l = 0; l < layers.length; l++)
        {
            final String p = "blk." + l + ".";
            layers[l] = new LayerWeights(
                vector(p + "attn_norm.weight", dim),
                matrix(p + "attn_q.weight", config.qDim(), dim),
                matrix(p + "attn_k.weight", config.kvDim(), dim),
                matrix(p + "attn_v.weight", config.kvDim(), dim),
                matrix(p + "attn_output.weight", dim, config.qDim()),
                config.qkvBias() ? vector(p + "attn_q.bias", config.qDim()) : null,
                config.qkvBias() ? vector(p + "attn_k.bias", config.kvDim()) : null,
                config.qkvBias() ? vector(p + "attn_v.bias", config.kvDim()) : null,
                vector(p + "ffn_norm.weight", dim),
                matrix(p + "ffn_gate.weight", config.ffnDim(), dim),
                matrix(p + "ffn_up.weight", config.ffnDim(), dim),
                matrix(p + "ffn_down.weight", dim, config.ffnDim()));
        }
    }

    public GgufFile file()
    {
        return file;
    }

    private GgufTensorInfo require(final String name)
    {
        final GgufTensorInfo info = file.tensor(name);
        if (info == null)
        {
            throw new GgufFormatException("missing tensor " + name);
        }
        return info;
    }

    private WeightTensor matrix(final String name, final int rows, final int cols)
    {
        final GgufTensorInfo info = require(name);
        if (info.shape().length != 2 || info.shape()[0] != cols || info.shape()[1] != rows)
        {
            throw new GgufFormatException("tensor " + name + " has shape " + Arrays.toString(info.shape()) +
                ", expected [" + cols + ", " + rows + "]");
        }
        return WeightTensor.of(name, info.type(), file.tensorData(info), rows, cols);
    }

    private float[] vector(final String name, final int length)
    {
        final GgufTensorInfo info = require(name);
        if (info.elementCount() != length)
        {
            throw new GgufFormatException("tensor " + name + " has " + info.elementCount() + " elements, expected " +
                length);
        }
        if (info.type() == GgmlType.F32)
        {
            return file.tensorData(info).toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
        }
        final float[] out = new float[length];
        WeightTensor.of(name, info.type(), file.tensorData(info), 1, length).dequantizeRow(0, out, 0);
        return out;
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
