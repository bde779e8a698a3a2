package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.gguf.GgufTensorInfo;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A plain scalar Llama/Qwen2 forward pass written for the tests: one token at a time, double-precision sums,
 * weights dequantized by its own F32/F16/Q8_0 readers, no vectors, no threads, no batching. It shares no code
 * with the runtime beyond the GGUF reader.
 */
final class ReferenceLlama
{
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort S = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final GgufFile file;
    private final String arch;
    private final int dim, layers, heads, kvHeads, hs, ffn, experts, used;
    private final double eps, theta;
    private final boolean neox;
    private final List<List<double[]>> keys = new ArrayList<>();
    private final List<List<double[]>> values = new ArrayList<>();

    ReferenceLlama(final GgufFile file)
    {
        this.file = file;
        final GgufMetadata md = file.metadata();
        arch = md.getString("general.architecture");
        dim = md.getInt(arch + ".embedding_length");
        layers = md.getInt(arch + ".block_count");
        heads = md.getInt(arch + ".attention.head_count");
        kvHeads = md.getInt(arch + ".attention.head_count_kv");
        ffn = md.getInt(arch + ".feed_forward_length");
        experts = md.getInt(arch + ".expert_count", 0);
        used = md.getInt(arch + ".expert_used_count", 0);
        hs = dim / heads;
        eps = md.getFloat(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
        theta = md.getFloat(arch + ".rope.freq_base", 10000f);
        neox = arch.equals("qwen2");
        for (int l = 0; l < layers; l++)
        {
            keys.add(new ArrayList<>());
            values.add(new ArrayList<>());
        }
    }

    /** Feeds one token at the next position and returns the logits. */
    double[] step(final int token)
    {
        final int pos = keys.get(0).size();
        double[] x = row("token_embd.weight", token);
        for (int l = 0; l < layers; l++)
        {
            final String p = "blk." + l + ".";
            final double[] xb = rmsnorm(x, vector(p + "attn_norm.weight"));
            final double[] q = add(matvec(p + "attn_q.weight", xb), optional(p + "attn_q.bias"));
            final double[] k = add(matvec(p + "attn_k.weight", xb), optional(p + "attn_k.bias"));
            final double[] v = add(matvec(p + "attn_v.weight", xb), optional(p + "attn_v.bias"));
            rope(q, heads, pos);
            rope(k, kvHeads, pos);
            keys.get(l).add(k);
            values.get(l).add(v);
            final double[] out = new double[dim];
            for (int h = 0; h < heads; h++)
            {
                final int kvh = h / (heads / kvHeads);
                final double[] a = new double[pos + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int t = 0; t <= pos; t++)
                {
                    double s = 0;
                    for (int i = 0; i < hs; i++)
                    {
                        s += q[h * hs + i] * keys.get(l).get(t)[kvh * hs + i];
                    }
                    a[t] = s / Math.sqrt(hs);
                    max = Math.max(max, a[t]);
                }
                double sum = 0;
                for (int t = 0; t <= pos; t++)
                {
                    a[t] = Math.exp(a[t] - max);
                    sum += a[t];
                }
                for (int t = 0; t <= pos; t++)
                {
                    for (int i = 0; i < hs; i++)
                    {
                        out[h * hs + i] += a[t] / sum * values.get(l).get(t)[kvh * hs + i];
                    }
                }
            }
            x = add(x, matvec(p + "attn_output.weight", out));
            final double[] xf = rmsnorm(x, vector(p + "ffn_norm.weight"));
            if (experts > 0)
            {
                x = add(x, mixture(p, xf));
                continue;
            }
            final double[] g = matvec(p + "ffn_gate.weight", xf);
            final double[] u = matvec(p + "ffn_up.weight", xf);
            for (int i = 0; i < ffn; i++)
            {
                g[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
            }
            x = add(x, matvec(p + "ffn_down.weight", g));
        }
        final double[] xn = rmsnorm(x, vector("output_norm.weight"));
        return matvec(file.tensor("output.weight") != null ? "output.weight" : "token_embd.weight", xn);
    }

    /** Router softmax over every expert, the best {@code used} (lowest index on ties), weights renormalized. */
    private double[] mixture(final String p, final double[] xf)
    {
        final double[] scores = matvec(p + "ffn_gate_inp.weight", xf);
        double max = Double.NEGATIVE_INFINITY;
        for (final double v : scores)
        {
            max = Math.max(max, v);
        }
        final double[] prob = new double[experts];
        double z = 0;
        for (int e = 0; e < experts; e++)
        {
            prob[e] = Math.exp(scores[e] - max);
            z += prob[e];
        }
        final boolean[] taken = new boolean[experts];
        final int[] chosen = new int[used];
        double chosenSum = 0;
        for (int j = 0; j < used; j++)
        {
            int best = -1;
            for (int e = 0; e < experts; e++)
            {
                if (!taken[e] && (best < 0 || scores[e] > scores[best]))
                {
                    best = e;
                }
            }
            taken[best] = true;
            chosen[j] = best;
            chosenSum += prob[best] / z;
        }
        final double[] out = new double[dim];
        for (final int e : chosen)
        {
            final double[] g = matvecRows(p + "ffn_gate_exps.weight", xf, e * ffn, ffn);
            final double[] u = matvecRows(p + "ffn_up_exps.weight", xf, e * ffn, ffn);
            for (int i = 0; i < ffn; i++)
            {
                g[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
            }
            final double[] d = matvecRows(p + "ffn_down_exps.weight", g, e * dim, dim);
            final double w = prob[e] / z / chosenSum;
            for (int i = 0; i < dim; i++)
            {
                out[i] += w * d[i];
            }
        }
        return out;
    }

    private double[] matvecRows(final String name, final double[] x, final int first, final int rows)
    {
        final double[] out = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            final double[] w = row(name, first + r);
            double s = 0;
            for (int i = 0; i < w.length; i++)
            {
                s += w[i] * x[i];
            }
            out[r] = s;
        }
        return out;
    }

    private void rope(final double[] a, final int n, final int pos)
    {
        for (int h = 0; h < n; h++)
        {
            for (int i = 0; i < hs / 2; i++)
            {
                final double angle = pos * Math.pow(theta, -2.0 * i / hs);
                final int i0 = neox ? h * hs + i : h * hs + 2 * i;
                final int i1 = neox ? h * hs + i + hs / 2 : h * hs + 2 * i + 1;
                final double v0 = a[i0];
                final double v1 = a[i1];
                a[i0] = v0 * Math.cos(angle) - v1 * Math.sin(angle);
                a[i1] = v0 * Math.sin(angle) + v1 * Math.cos(angle);
            }
        }
    }

    private double[] rmsnorm(final double[] x, final double[] w)
    {
        double ss = 0;
        for (final double v : x)
        {
            ss += v * v;
        }
        final double inv = 1 / Math.sqrt(ss / x.length + eps);
        final double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++)
        {
            out[i] = x[i] * inv * w[i];
        }
        return out;
    }

    private static double[] add(final double[] a, final double[] b)
    {
        if (b == null)
        {
            return a;
        }
        final double[] out = a.clone();
        for (int i = 0; i < a.length; i++)
        {
            out[i] += b[i];
        }
        return out;
    }

    private double[] optional(final String name)
    {
        return file.tensor(name) == null ? null : vector(name);
    }

    private double[] vector(final String name)
    {
        return row(name, 0);
    }

    private double[] matvec(final String name, final double[] x)
    {
        final GgufTensorInfo info = file.tensor(name);
        final int rows = (int)info.rowCount();
        final double[] out = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            final double[] w = row(name, r);
            double s = 0;
            for (int i = 0; i < w.length; i++)
            {
                s += w[i] * x[i];
            }
            out[r] = s;
        }
        return out;
    }

    /** Row r of a tensor, dequantized here (F32, F16 and Q8_0 only). */
    private double[] row(final String name, final int r)
    {
        final GgufTensorInfo info = file.tensor(name);
        final MemorySegment data = file.tensorData(info);
        final int n = (int)info.rowLength();
        final long rowBytes = info.type().byteSize(n);
        final long base = r * rowBytes;
        final double[] out = new double[n];
        for (int i = 0; i < n; i++)
        {
            out[i] = switch (info.type())
            {
                case F32 -> data.get(F, base + 4L * i);
                case F16 -> Float.float16ToFloat(data.get(S, base + 2L * i));
                case Q8_0 -> Float.float16ToFloat(data.get(S, base + 34L * (i / 32))) *
                    data.get(ValueLayout.JAVA_BYTE, base + 34L * (i / 32) + 2 + i % 32);
                default -> throw new IllegalArgumentException("reference reads F32/F16/Q8_0, not " + info.type());
            };
        }
        return out;
    }

    static boolean supports(final GgmlType type)
    {
        return type == GgmlType.F32 || type == GgmlType.F16 || type == GgmlType.Q8_0;
    }
}
