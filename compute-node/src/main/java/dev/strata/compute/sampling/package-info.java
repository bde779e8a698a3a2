/**
 * Token samplers: turn a vector of logits into the next token id.
 * <p>
 * {@link dev.strata.compute.sampling.Sampler#create(dev.strata.compute.sampling.SamplerConfig)} builds either a
 * greedy (argmax) sampler or a stochastic chain in llama.cpp's order: repetition penalty, top-k, top-p, min-p,
 * temperature, softmax, then a draw from a seeded {@code L64X128MixRandom}, so a seed reproduces a run.
 */
package dev.strata.compute.sampling;
