package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.tensor.WeightTensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.function.UnaryOperator;

/**
 * Builds the forward pass's weight records from named tensors, wherever their bytes live (a mapped GGUF file,
 * a buffer of blocks pulled from the parameter service). Shapes are checked against the configuration, so a
 * mismatch fails with the tensor's name.
 */
public final class WeightViews
{
    /** One named tensor: its type, GGUF shape (innermost first) and bytes. */
    public record Tensor(GgmlType type, long[] shape, MemorySegment data)
    {
        long elementCount()
        {
            long n = 1;
            for (final long d : shape)
            {
                n *= d;
            }
            return n;
        }
    }

    /** Looks tensors up by GGUF name; {@code null} when absent. */
    @FunctionalInterface
    public interface Lookup
    {
        Tensor tensor(String name);
    }

    private WeightViews()
    {
    }

    /** The tensor names layer {@code l} needs, in the order {@link #layer} reads them. */
    public static String[] layerTensorNames(final ModelConfig config, final int l)
    {
        return layerTensorNames(config, l, true);
    }

    /** As {@link #layerTensorNames(ModelConfig, int)}; without the expert tensors when {@code withExperts} is false. */
    public static String[] layerTensorNames(final ModelConfig config, final int l, final boolean withExperts)
    {
        final String p = "blk." + l + ".";
        if (config.moe() && !withExperts)
        {
            final String[] all = layerTensorNames(config, l, true);
            return java.util.Arrays.copyOf(all, all.length - 3);
        }
        if (config.moe())
        {
            final String[] attention = config.qkvBias() ?
                new String[]{p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                    p + "attn_output.weight", p + "attn_q.bias", p + "attn_k.bias", p + "attn_v.bias"} :
                new String[]{p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                    p + "attn_output.weight"};
            final String[] all = Arrays.copyOf(attention, attention.length + 5);
            all[attention.length] = p + "ffn_norm.weight";
            all[attention.length + 1] = p + "ffn_gate_inp.weight";
            all[attention.length + 2] = p + "ffn_gate_exps.weight";
            all[attention.length + 3] = p + "ffn_up_exps.weight";
            all[attention.length + 4] = p + "ffn_down_exps.weight";
            return all;
        }
        return config.qkvBias() ?
            new String[]{p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                p + "attn_output.weight", p + "attn_q.bias", p + "attn_k.bias", p + "attn_v.bias",
                p + "ffn_norm.weight", p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight"} :
            new String[]{p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                p + "attn_output.weight", p + "ffn_norm.weight", p + "ffn_gate.weight", p + "ffn_up.weight",
                p + "ffn_down.weight"};
    }

    /** The global tensor names present in a model (the output matrix is absent when tied to the embedding). */
    public static String[] globalTensorNames(final boolean hasOutput)
    {
        return hasOutput ? new String[]{"token_embd.weight", "output_norm.weight", "output.weight"} :
            new String[]{"token_embd.weight", "output_norm.weight"};
    }

    /**
     * {@code w} with every matrix passed through {@code f} (the kernels' layout: {@code Kernels.prepare}). The
     * norms and biases are kept.
     */
    public static LayerWeights map(final LayerWeights w, final UnaryOperator<WeightTensor> f)
    {
        return new LayerWeights(w.attnNorm(), f.apply(w.wq()), f.apply(w.wk()), f.apply(w.wv()), f.apply(w.wo()),
            w.bq(), w.bk(), w.bv(), w.ffnNorm(), mapOrNull(w.wGate(), f), mapOrNull(w.wUp(), f),
            mapOrNull(w.wDown(), f), mapOrNull(w.router(), f), map(w.expertGate(), f), map(w.expertUp(), f),
            map(w.expertDown(), f));
    }

    /**
     * {@code g} with the classifier passed through {@code f}; the embedding is only looked up row by row and stays
     * as it is, unless it is the classifier too (tied), when both are the one new tensor (whose rows still read
     * right).
     */
    public static GlobalWeights map(final GlobalWeights g, final UnaryOperator<WeightTensor> f)
    {
        final WeightTensor output = f.apply(g.output());
        return new GlobalWeights(g.output() == g.tokenEmbedding() ? output : g.tokenEmbedding(), g.outputNorm(),
            output);
    }

    /** Every tensor of {@code ts} passed through {@code f}; null for null. */
    public static WeightTensor[] map(final WeightTensor[] ts, final UnaryOperator<WeightTensor> f)
    {
        if (ts == null)
        {
            return null;
        }
        final WeightTensor[] out = new WeightTensor[ts.length];
        for (int i = 0; i < ts.length; i++)
        {
            out[i] = f.apply(ts[i]);
        }
        return out;
    }

    private static WeightTensor mapOrNull(final WeightTensor t, final UnaryOperator<WeightTensor> f)
    {
        return t == null ? null : f.apply(t);
    }

    public static GlobalWeights globals(final Lookup lookup, final ModelConfig config)
    {
        final int dim = config.dim();
        final WeightTensor embedding = matrix(lookup, "token_embd.weight", config.vocabSize(), dim);
        final WeightTensor output = lookup.tensor("output.weight") != null ?
            matrix(lookup, "output.weight", config.vocabSize(), dim) : embedding;
        return new GlobalWeights(embedding, vector(lookup, "output_norm.weight", dim), output);
    }

    public static LayerWeights layer(final Lookup lookup, final ModelConfig config, final int l)
    {
        return layer(lookup, config, l, true);
    }

    /** The names of the three expert tensors of layer {@code l}: gate, up, down. */
    public static String[] expertTensorNames(final int l)
    {
        return new String[]{"blk." + l + ".ffn_gate_exps.weight", "blk." + l + ".ffn_up_exps.weight",
            "blk." + l + ".ffn_down_exps.weight"};
    }

    /**
     * One expert's matrices, each given as the bytes of that expert alone: {@code gate}, {@code up}, {@code down}
     * slices of the 3-D expert tensors.
     */
    public static WeightTensor[] expert(final ModelConfig config, final int l, final int e, final GgmlType type,
        final MemorySegment gate, final MemorySegment up, final MemorySegment down)
    {
        final String[] n = expertTensorNames(l);
        return new WeightTensor[]{
            WeightTensor.of(n[0] + "[" + e + "]", type, gate, config.ffnDim(), config.dim()),
            WeightTensor.of(n[1] + "[" + e + "]", type, up, config.ffnDim(), config.dim()),
            WeightTensor.of(n[2] + "[" + e + "]", type, down, config.dim(), config.ffnDim())};
    }

    /** A layer; for a mixture of experts without the experts when {@code withExperts} is false (fetched apart). */
    public static LayerWeights layer(final Lookup lookup, final ModelConfig config, final int l,
        final boolean withExperts)
    {
        final boolean experts = config.moe() && withExperts;
        final int dim = config.dim();
        final String p = "blk." + l + ".";
        return new LayerWeights(
            vector(lookup, p + "attn_norm.weight", dim),
            matrix(lookup, p + "attn_q.weight", config.qDim(), dim),
            matrix(lookup, p + "attn_k.weight", config.kvDim(), dim),
            matrix(lookup, p + "attn_v.weight", config.kvDim(), dim),
            matrix(lookup, p + "attn_output.weight", dim, config.qDim()),
            config.qkvBias() ? vector(lookup, p + "attn_q.bias", config.qDim()) : null,
            config.qkvBias() ? vector(lookup, p + "attn_k.bias", config.kvDim()) : null,
            config.qkvBias() ? vector(lookup, p + "attn_v.bias", config.kvDim()) : null,
            vector(lookup, p + "ffn_norm.weight", dim),
            config.moe() ? null : matrix(lookup, p + "ffn_gate.weight", config.ffnDim(), dim),
            config.moe() ? null : matrix(lookup, p + "ffn_up.weight", config.ffnDim(), dim),
            config.moe() ? null : matrix(lookup, p + "ffn_down.weight", dim, config.ffnDim()),
            config.moe() ? matrix(lookup, p + "ffn_gate_inp.weight", config.experts(), dim) : null,
            experts ? experts(lookup, p + "ffn_gate_exps.weight", config.experts(), config.ffnDim(), dim) : null,
            experts ? experts(lookup, p + "ffn_up_exps.weight", config.experts(), config.ffnDim(), dim) : null,
            experts ? experts(lookup, p + "ffn_down_exps.weight", config.experts(), dim, config.ffnDim()) : null);
    }

    /** A 3-D expert tensor {@code [cols, rows, experts]} as one matrix view per expert (contiguous slices). */
    static WeightTensor[] experts(final Lookup lookup, final String name, final int experts, final int rows,
        final int cols)
    {
        final Tensor t = require(lookup, name);
        if (t.shape().length != 3 || t.shape()[0] != cols || t.shape()[1] != rows || t.shape()[2] != experts)
        {
            throw new GgufFormatException("tensor " + name + " has shape " + Arrays.toString(t.shape()) +
                ", expected [" + cols + ", " + rows + ", " + experts + "]");
        }
        final long perExpert = t.type().byteSize((long)rows * cols);
        if (perExpert * experts != t.data().byteSize())
        {
            throw new GgufFormatException("tensor " + name + " holds " + t.data().byteSize() + " bytes, expected " +
                perExpert * experts);
        }
        final WeightTensor[] out = new WeightTensor[experts];
        for (int e = 0; e < experts; e++)
        {
            out[e] = WeightTensor.of(name + "[" + e + "]", t.type(), t.data().asSlice(e * perExpert, perExpert), rows,
                cols);
        }
        return out;
    }

    static Tensor require(final Lookup lookup, final String name)
    {
        final Tensor t = lookup.tensor(name);
        if (t == null)
        {
            throw new GgufFormatException("missing tensor " + name);
        }
        return t;
    }

    static WeightTensor matrix(final Lookup lookup, final String name, final int rows, final int cols)
    {
        final Tensor t = require(lookup, name);
        if (t.shape().length != 2 || t.shape()[0] != cols || t.shape()[1] != rows)
        {
            throw new GgufFormatException("tensor " + name + " has shape " + Arrays.toString(t.shape()) +
                ", expected [" + cols + ", " + rows + "]");
        }
        return WeightTensor.of(name, t.type(), t.data(), rows, cols);
    }

    static float[] vector(final Lookup lookup, final String name, final int length)
    {
        final Tensor t = require(lookup, name);
        if (t.elementCount() != length)
        {
            throw new GgufFormatException("tensor " + name + " has " + t.elementCount() + " elements, expected " +
                length);
        }
        if (t.type() == GgmlType.F32)
        {
            return t.data().toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN));
        }
        final float[] out = new float[length];
        WeightTensor.of(name, t.type(), t.data(), 1, length).dequantizeRow(0, out, 0);
        return out;
    }
}
