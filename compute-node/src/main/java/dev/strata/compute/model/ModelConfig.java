package dev.strata.compute.model;

import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.gguf.GgufMetadata;

import java.util.Set;

/**
 * Hyper-parameters of a Llama-family model, read from GGUF metadata ({@code <arch>.*} keys) with llama.cpp's
 * defaults where a key is optional.
 *
 * @param architecture  {@code general.architecture}: llama, mistral or qwen2.
 * @param dim           embedding length.
 * @param layers        transformer blocks.
 * @param heads         query heads.
 * @param kvHeads       key/value heads (grouped-query attention when fewer than heads).
 * @param headSize      dimension of one head.
 * @param ffnDim        hidden size of the SwiGLU feed-forward network.
 * @param vocabSize     rows of the token embedding.
 * @param contextLength longest sequence the model was trained for.
 * @param rmsEps        RMSNorm epsilon.
 * @param ropeTheta     RoPE frequency base.
 * @param ropeDims      dimensions of each head that RoPE rotates.
 * @param ropeStyle     which pairs RoPE rotates.
 * @param qkvBias       whether the q/k/v projections have a bias (qwen2).
 * @param experts       feed-forward experts per layer (Mixtral-style mixture of experts), 0 for a dense model.
 * @param expertsUsed   experts each token is routed to (top-k), 0 for a dense model.
 */
public record ModelConfig(
    String architecture,
    int dim,
    int layers,
    int heads,
    int kvHeads,
    int headSize,
    int ffnDim,
    int vocabSize,
    int contextLength,
    float rmsEps,
    float ropeTheta,
    int ropeDims,
    RopeStyle ropeStyle,
    boolean qkvBias,
    int experts,
    int expertsUsed)
{
    /** Which element pairs RoPE rotates within a head. */
    public enum RopeStyle
    {
        /** Adjacent pairs (2i, 2i+1): ggml's "normal" mode, used by llama and mistral GGUFs. */
        NORMAL,
        /** Pairs (i, i + d/2): GPT-NeoX mode, used by qwen2. */
        NEOX
    }

    public static final Set<String> ARCHITECTURES = Set.of("llama", "mistral", "qwen2");

    public ModelConfig
    {
        check(dim > 0, "dim", dim);
        check(layers > 0, "layers", layers);
        check(heads > 0, "heads", heads);
        check(kvHeads > 0 && heads % kvHeads == 0, "kvHeads", kvHeads);
        check(headSize > 0 && headSize % 2 == 0, "headSize", headSize);
        check(ffnDim > 0, "ffnDim", ffnDim);
        check(vocabSize > 0, "vocabSize", vocabSize);
        check(contextLength > 0, "contextLength", contextLength);
        check(ropeDims > 0 && ropeDims <= headSize && ropeDims % 2 == 0, "ropeDims", ropeDims);
        check(experts >= 0 && experts <= 1024, "experts", experts);
        check(experts == 0 ? expertsUsed == 0 : expertsUsed >= 1 && expertsUsed <= experts, "expertsUsed",
            expertsUsed);
    }

    /** Whether the feed-forward networks are mixtures of experts. */
    public boolean moe()
    {
        return experts > 0;
    }

    private static void check(final boolean ok, final String name, final int value)
    {
        if (!ok)
        {
            throw new GgufFormatException("invalid model hyper-parameter " + name + "=" + value);
        }
    }

    /**
     * Reads the configuration of a model.
     *
     * @param vocabSize rows of {@code token_embd.weight} (the tokenizer may list a different count).
     * @throws GgufFormatException for an unsupported architecture or missing/invalid keys.
     */
    public static ModelConfig fromMetadata(final GgufMetadata md, final int vocabSize)
    {
        final String arch = md.getString("general.architecture", null);
        if (arch == null)
        {
            throw new GgufFormatException("missing metadata key general.architecture");
        }
        if (!ARCHITECTURES.contains(arch))
        {
            throw new GgufFormatException("unsupported architecture '" + arch + "' (supported: llama, mistral, qwen2)");
        }
        final int dim = md.getInt(arch + ".embedding_length");
        final int heads = md.getInt(arch + ".attention.head_count");
        final int kvHeads = md.getInt(arch + ".attention.head_count_kv", heads);
        final int headSize = md.getInt(arch + ".attention.key_length", heads > 0 ? dim / heads : 0);
        final int valueLength = md.getInt(arch + ".attention.value_length", headSize);
        if (valueLength != headSize)
        {
            throw new GgufFormatException("key_length " + headSize + " != value_length " + valueLength +
                " is not supported");
        }
        final boolean qwen2 = arch.equals("qwen2");
        return new ModelConfig(
            arch,
            dim,
            md.getInt(arch + ".block_count"),
            heads,
            kvHeads,
            headSize,
            md.getInt(arch + ".feed_forward_length"),
            vocabSize,
            md.getInt(arch + ".context_length", 2048),
            md.getFloat(arch + ".attention.layer_norm_rms_epsilon", 1e-5f),
            md.getFloat(arch + ".rope.freq_base", 10_000f),
            md.getInt(arch + ".rope.dimension_count", headSize),
            qwen2 ? RopeStyle.NEOX : RopeStyle.NORMAL,
            qwen2,
            md.getInt(arch + ".expert_count", 0),
            md.getInt(arch + ".expert_count", 0) == 0 ? 0 : md.getInt(arch + ".expert_used_count", 2));
    }

    /** Total width of the key (or value) projections. */
    public int kvDim()
    {
        return kvHeads * headSize;
    }

    /** Width of the query projection. */
    public int qDim()
    {
        return heads * headSize;
    }
}
