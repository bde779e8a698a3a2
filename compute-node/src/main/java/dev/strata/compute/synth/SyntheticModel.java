package dev.strata.compute.synth;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.gguf.GgufWriter;
import dev.strata.compute.tensor.Quantizer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes deterministic synthetic Llama models as GGUF files, at real sizes, for tests and benchmarks: the
 * same shape, type and seed always give the same bytes. Weights are uniform noise scaled like a trained
 * model's (so activations stay finite over many layers); norms are ones. The tokenizer is copied from a given
 * GGUF (all {@code tokenizer.*} keys) or, without one, a built-in byte-fallback SentencePiece vocabulary.
 */
public final class SyntheticModel
{
    /**
     * A Llama model shape.
     *
     * @param vocab       vocabulary size; 0 means "take it from the tokenizer".
     * @param experts     feed-forward experts per layer (Mixtral-style mixture of experts); 0 for dense.
     * @param expertsUsed experts per token (top-k); 0 for dense.
     */
    public record Shape(int dim, int layers, int heads, int kvHeads, int ffn, int vocab, int context, int experts,
        int expertsUsed)
    {
        public static final Map<String, Shape> NAMED = Map.of(
            "tiny", new Shape(64, 2, 4, 2, 128, 0, 512),
            "tiny-moe", new Shape(64, 2, 4, 2, 128, 0, 512, 4, 2),
            "15M", new Shape(288, 6, 6, 6, 768, 0, 2048),
            "110M", new Shape(768, 12, 12, 12, 2048, 0, 2048),
            "8x110M", new Shape(768, 12, 12, 12, 2048, 0, 2048, 8, 2),
            "1.1B", new Shape(2048, 22, 32, 4, 5632, 0, 2048));

        public Shape(final int dim, final int layers, final int heads, final int kvHeads, final int ffn,
            final int vocab, final int context)
        {
            this(dim, layers, heads, kvHeads, ffn, vocab, context, 0, 0);
        }

        public Shape
        {
            if (dim <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || ffn <= 0 || context <= 0 || vocab < 0 ||
                dim % heads != 0 || heads % kvHeads != 0 || (dim / heads) % 2 != 0 || experts < 0 ||
                (experts == 0 ? expertsUsed != 0 : expertsUsed < 1 || expertsUsed > experts))
            {
                throw new IllegalArgumentException("invalid shape " + this);
            }
        }

        /**
         * Parses a named shape ({@code tiny, 15M, 110M, 1.1B}) or {@code dim=..,layers=..,heads=..,kv=..,ffn=..
         * [,vocab=..][,context=..]}.
         */
        public static Shape parse(final String text)
        {
            final Shape named = NAMED.get(text);
            if (named != null)
            {
                return named;
            }
            int dim = 0, layers = 0, heads = 0, kv = 0, ffn = 0, vocab = 0, context = 2048, experts = 0, used = 0;
            for (final String part : text.split(","))
            {
                final String[] kvp = part.split("=", 2);
                if (kvp.length != 2)
                {
                    throw new IllegalArgumentException("unknown shape '" + text + "' (named: " + NAMED.keySet() +
                        ", or dim=..,layers=..,heads=..,kv=..,ffn=..)");
                }
                final int value = Integer.parseInt(kvp[1].trim());
                switch (kvp[0].trim())
                {
                    case "dim" -> dim = value;
                    case "layers" -> layers = value;
                    case "heads" -> heads = value;
                    case "kv" -> kv = value;
                    case "ffn" -> ffn = value;
                    case "vocab" -> vocab = value;
                    case "context" -> context = value;
                    case "experts" -> experts = value;
                    case "used" -> used = value;
                    default -> throw new IllegalArgumentException("unknown shape field '" + kvp[0] + "'");
                }
            }
            return new Shape(dim, layers, heads, kv == 0 ? heads : kv, ffn, vocab, context, experts,
                experts > 0 && used == 0 ? Math.min(2, experts) : used);
        }

        public int headSize()
        {
            return dim / heads;
        }

        /** Parameters, given the vocabulary size. */
        public long parameters(final int vocabSize)
        {
            final long kvDim = (long)kvHeads * headSize();
            final long perLayer = 2L * dim * dim + 2L * dim * kvDim + 3L * dim * ffn * Math.max(1, experts) +
                (long)experts * dim + 2L * dim;
            return layers * perLayer + 2L * vocabSize * dim + dim;
        }
    }

    private SyntheticModel()
    {
    }

    /**
     * Writes a synthetic model.
     *
     * @param tokenizer metadata holding {@code tokenizer.*} keys, or {@code null} for the built-in vocabulary.
     * @return the vocabulary size used.
     */
    public static int write(final Path out, final Shape shape, final GgmlType type, final GgufMetadata tokenizer,
        final long seed) throws IOException
    {
        return write(out, shape, type, tokenizer, seed, "llama");
    }

    /**
     * Writes a synthetic model of the given architecture: {@code llama} or {@code qwen2} (which adds q/k/v
     * biases and uses NeoX-style RoPE).
     */
    public static int write(final Path out, final Shape shape, final GgmlType type, final GgufMetadata tokenizer,
        final long seed, final String arch) throws IOException
    {
        if (!arch.equals("llama") && !arch.equals("qwen2"))
        {
            throw new IllegalArgumentException("synth writes llama or qwen2 models, not " + arch);
        }
        if (!Quantizer.canWrite(type))
        {
            throw new IllegalArgumentException("synth cannot write type " + type + " (F32, F16, BF16, Q8_0, Q4_0)");
        }
        final GgufMetadata md = new GgufMetadata();
        md.putString("general.architecture", arch);
        md.putString("general.name", "strata-synth-" + shape.dim() + "x" + shape.layers() + "-" + type);
        md.putUInt32("general.file_type", fileType(type));
        md.putUInt32(arch + ".context_length", shape.context());
        md.putUInt32(arch + ".embedding_length", shape.dim());
        md.putUInt32(arch + ".block_count", shape.layers());
        md.putUInt32(arch + ".feed_forward_length", shape.ffn());
        md.putUInt32(arch + ".rope.dimension_count", shape.headSize());
        md.putUInt32(arch + ".attention.head_count", shape.heads());
        md.putUInt32(arch + ".attention.head_count_kv", shape.kvHeads());
        md.putFloat32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
        md.putFloat32(arch + ".rope.freq_base", 10_000f);
        if (shape.experts() > 0)
        {
            md.putUInt32(arch + ".expert_count", shape.experts());
            md.putUInt32(arch + ".expert_used_count", shape.expertsUsed());
        }
        final GgufMetadata tok = tokenizer != null ? tokenizer : BuiltinVocabulary.metadata();
        for (final String key : tok.keys())
        {
            if (key.startsWith("tokenizer."))
            {
                md.copy(key, tok);
            }
        }
        final int vocab = shape.vocab() > 0 ? shape.vocab() : tok.getStringArray("tokenizer.ggml.tokens").length;
        md.putUInt32(arch + ".vocab_size", vocab);

        final int dim = shape.dim();
        final int kvDim = shape.kvHeads() * shape.headSize();
        final List<GgufWriter.Tensor> tensors = new ArrayList<>();
        long stream = seed * 1_000_003L;
        tensors.add(matrix("token_embd.weight", type, vocab, dim, 1.0f, stream++));
        tensors.add(norm("output_norm.weight", dim));
        tensors.add(matrix("output.weight", type, vocab, dim, 1f / (float)Math.sqrt(dim), stream++));
        for (int l = 0; l < shape.layers(); l++)
        {
            final String p = "blk." + l + ".";
            tensors.add(norm(p + "attn_norm.weight", dim));
            tensors.add(matrix(p + "attn_q.weight", type, dim, dim, scale(dim), stream++));
            tensors.add(matrix(p + "attn_k.weight", type, kvDim, dim, scale(dim), stream++));
            tensors.add(matrix(p + "attn_v.weight", type, kvDim, dim, scale(dim), stream++));
            if (arch.equals("qwen2"))
            {
                tensors.add(bias(p + "attn_q.bias", dim, stream++));
                tensors.add(bias(p + "attn_k.bias", kvDim, stream++));
                tensors.add(bias(p + "attn_v.bias", kvDim, stream++));
            }
            tensors.add(matrix(p + "attn_output.weight", type, dim, dim, scale(dim) / shape.layers(), stream++));
            tensors.add(norm(p + "ffn_norm.weight", dim));
            if (shape.experts() > 0)
            {
                final int e = shape.experts();
                // the router is F32 (as in published Mixtral files); its scores spread tokens over the experts
                tensors.add(matrix(p + "ffn_gate_inp.weight", GgmlType.F32, e, dim, 4 * scale(dim), stream++));
                tensors.add(experts(p + "ffn_gate_exps.weight", type, e, shape.ffn(), dim, scale(dim), stream++));
                tensors.add(experts(p + "ffn_up_exps.weight", type, e, shape.ffn(), dim, scale(dim), stream++));
                tensors.add(experts(p + "ffn_down_exps.weight", type, e, dim, shape.ffn(),
                    scale(shape.ffn()) / shape.layers(), stream++));
                continue;
            }
            tensors.add(matrix(p + "ffn_gate.weight", type, shape.ffn(), dim, scale(dim), stream++));
            tensors.add(matrix(p + "ffn_up.weight", type, shape.ffn(), dim, scale(dim), stream++));
            tensors.add(matrix(p + "ffn_down.weight", type, dim, shape.ffn(), scale(shape.ffn()) / shape.layers(),
                stream++));
        }
        GgufWriter.write(out, md, tensors);
        return vocab;
    }

    private static float scale(final int fanIn)
    {
        // uniform in [-a, a] has variance a^2/3: a = sqrt(3 / fanIn) keeps unit variance through a projection
        return (float)Math.sqrt(3.0 / fanIn);
    }

    private static int fileType(final GgmlType type)
    {
        return switch (type)
        {
            case F32 -> 0;
            case F16 -> 1;
            case Q4_0 -> 2;
            case Q8_0 -> 7;
            case BF16 -> 32;
            default -> throw new IllegalArgumentException(type.name());
        };
    }

    private static GgufWriter.Tensor norm(final String name, final int n)
    {
        return new GgufWriter.Tensor(name, GgmlType.F32, new long[]{n}, ch ->
        {
            final ByteBuffer b = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < n; i++)
            {
                b.putFloat(1f);
            }
            GgufWriter.writeFully(ch, b.flip());
        });
    }

    private static GgufWriter.Tensor bias(final String name, final int n, final long stream)
    {
        return new GgufWriter.Tensor(name, GgmlType.F32, new long[]{n}, ch -> writeRows(ch, GgmlType.F32, 1, n, 0.1f,
            stream));
    }

    private static GgufWriter.Tensor matrix(final String name, final GgmlType type, final int rows, final int cols,
        final float amplitude, final long stream)
    {
        return new GgufWriter.Tensor(name, type, new long[]{cols, rows}, ch -> writeRows(ch, type, rows, cols,
            amplitude, stream));
    }

    /** A 3-D expert tensor {@code [cols, rows, experts]}: the experts' matrices one after the other. */
    private static GgufWriter.Tensor experts(final String name, final GgmlType type, final int experts, final int rows,
        final int cols, final float amplitude, final long stream)
    {
        return new GgufWriter.Tensor(name, type, new long[]{cols, rows, experts}, ch -> writeRows(ch, type,
            rows * experts, cols, amplitude, stream));
    }

    private static void writeRows(final FileChannel ch, final GgmlType type, final int rows, final int cols,
        final float amplitude, final long stream) throws IOException
    {
        final int rowsPerChunk = Math.max(1, (1 << 22) / cols);
        final float[] values = new float[rowsPerChunk * cols];
        final ByteBuffer buf = ByteBuffer.allocateDirect((int)type.byteSize((long)rowsPerChunk * cols))
            .order(ByteOrder.LITTLE_ENDIAN);
        long state = stream ^ 0x9E3779B97F4A7C15L;
        for (int r = 0; r < rows; r += rowsPerChunk)
        {
            final int n = Math.min(rowsPerChunk, rows - r) * cols;
            for (int i = 0; i < n; i++)
            {
                // splitmix64: fast, deterministic, good enough for noise
                state += 0x9E3779B97F4A7C15L;
                long z = state;
                z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
                z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
                z ^= z >>> 31;
                values[i] = amplitude * ((z >>> 40) * 0x1.0p-23f - 1f);
            }
            buf.clear();
            Quantizer.quantize(type, values, 0, n, buf);
            GgufWriter.writeFully(ch, buf.flip());
        }
    }
}
