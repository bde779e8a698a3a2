/**
 * What a compute node will need next, and how well prefetching served it. Works on <em>units</em> (small
 * integers the caller maps to layers, a model's global tensors, or experts): {@link dev.strata.prefetch.Predictor}
 * and its implementations (fixed layer order for dense models; a predictor learned from recorded access traces
 * for data-dependent access), and {@link dev.strata.prefetch.PrefetchStats}. No model or transport knowledge here.
 */
package dev.strata.prefetch;
