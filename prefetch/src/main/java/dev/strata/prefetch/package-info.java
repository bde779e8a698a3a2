/**
 * Access traces, predictors, the prefetch scheduler and prefetch statistics.
 * Not built yet (issue 5); the module exists so the fixed top level builds.
 */
package dev.strata.prefetch;
