/**
 * The serving engine: many sequences per forward step over a paged KV block pool, with continuous batching,
 * chunked prefill, prefix caching and preemption. {@link dev.strata.compute.engine.Engine} is the facade;
 * {@link dev.strata.compute.engine.Scheduler} plans each step (schedule, execute, update).
 */
package dev.strata.compute.engine;
