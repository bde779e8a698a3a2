/**
 * Weight tensors in their stored layouts (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K) with Vector API kernels,
 * the quantizers used by {@code strata synth}, and parallel matrix products.
 */
package dev.strata.compute.tensor;
