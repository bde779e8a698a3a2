/**
 * The Llama-family model: configuration from GGUF metadata, the weight-source interface that hands the forward
 * pass one layer at a time, the paged KV cache, the forward pass and the generation loop.
 */
package dev.strata.compute.model;
