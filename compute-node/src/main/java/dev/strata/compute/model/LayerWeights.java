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
 * @param wDown      SwiGLU down projection, {@code (dim, ffnDim)}.
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
    WeightTensor wDown)
{
    /** Bytes of matrix weights read by one token through this layer. */
    public long matrixBytes()
    {
        return wq.byteSize() + wk.byteSize() + wv.byteSize() + wo.byteSize() +
            wGate.byteSize() + wUp.byteSize() + wDown.byteSize();
    }
}
