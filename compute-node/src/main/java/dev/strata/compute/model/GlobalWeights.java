package dev.strata.compute.model;

import dev.strata.compute.tensor.WeightTensor;

/**
 * Weights outside the transformer blocks.
 *
 * @param tokenEmbedding {@code (vocab, dim)}: row t is the embedding of token t.
 * @param outputNorm     final RMSNorm weight, {@code (dim)}.
 * @param output         classifier {@code (vocab, dim)}; the same tensor as the embedding when tied.
 */
public record GlobalWeights(WeightTensor tokenEmbedding, float[] outputNorm, WeightTensor output)
{
}
