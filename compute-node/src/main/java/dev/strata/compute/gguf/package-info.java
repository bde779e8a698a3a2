/**
 * The GGUF file format: a bounds-checked reader that maps files with FFM (no copy), typed metadata, and a
 * streaming writer used by {@code strata synth} and tests.
 */
package dev.strata.compute.gguf;
