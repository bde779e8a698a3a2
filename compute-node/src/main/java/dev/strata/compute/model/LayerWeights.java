package dev.strata.compute.model;

import dev.strata.compute.tensor.WeightTensor;

/**
 * The weights of one transformer block. Matrices are {@code (rows = out, cols = in)}.
 *
 * @param attnNorm   RMSNorm weight before attention, {@code (dim)}.
 * @param wq         query projection, {@code (heads * headSize, dim)}.
 * @param wk         key projection, {@code (kvHeads * headSize, dim)}.
 * @param wv         value projection, {@code (kvHeads * headSize, dim)}.
 * @param wo         attention output projection, {@code (dim, heads * headSize)}.
 * @param bq         query bias or {@code null}, {@code (heads * headSize)}.
 * @param bk         key bias or {@code null}, {@code (kvHeads * headSize)}.
 * @param bv         value bias or {@code null}, {@code (kvHeads * headSize)}.
 * @param ffnNorm    RMSNorm weight before the feed-forward network, {@code (dim)}.
 * @param wGate      SwiGLU gate projection, {@code (ffnDim, dim)}.
 * @param wUp        SwiGLU up projection, {@code (ffnDim, dim)}.
 * @param wDown      SwiGLU down projection, {@code (dim, ffnDim)}; for a mixture of experts, null.
 * @param router     mixture of experts: the router, {@code (experts, dim)}; null for a dense layer.
 * @param expertGate per expert, its gate projection {@code (ffnDim, dim)}; null for a dense layer.
 * @param expertUp   per expert, its up projection {@code (ffnDim, dim)}.
 * @param expertDown per expert, its down projection {@code (dim, ffnDim)}.
 */
public record LayerWeights(
    float[] attnNorm,
    WeightTensor wq,
    WeightTensor wk,
    WeightTensor wv,
    WeightTensor wo,
    float[] bq,
    float[] bk,
    float[] bv,
    float[] ffnNorm,
    WeightTensor wGate,
    WeightTensor wUp,
    WeightTensor wDown,
    WeightTensor router,
    WeightTensor[] expertGate,
    WeightTensor[] expertUp,
    WeightTensor[] expertDown)
{
    /** Bytes of matrix weights read by one token through this layer. */
    public long matrixBytes()
    {
        return matrixBytes(router == null ? 0 : expertGate.length);
    }

    /** Bytes of matrix weights one token reads when routed to {@code expertsUsed} experts (dense: ignored). */
    public long matrixBytes(final int expertsUsed)
    {
        final long attention = wq.byteSize() + wk.byteSize() + wv.byteSize() + wo.byteSize();
        if (router != null)
        {
            // the router and the experts one token uses (all experts are the same size)
            final int used = Math.max(1, expertsUsed);
            return attention + router.byteSize() +
                used * (expertGate[0].byteSize() + expertUp[0].byteSize() + expertDown[0].byteSize());
        }
        return attention + wGate.byteSize() + wUp.byteSize() + wDown.byteSize();
    }
}
