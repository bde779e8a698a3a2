/** Deterministic synthetic Llama models written as GGUF ({@code strata synth}). */
package dev.strata.compute.synth;
