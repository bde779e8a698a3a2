/**
 * The parameter service. Built so far: block serving over Aeron ({@link dev.strata.paramserver.BlockServer})
 * and its client ({@link dev.strata.paramserver.BlockClient}). the model registry as a deterministic state machine
 * over commands ({@link dev.strata.paramserver.ModelRegistry}, versions, labels and leases), persisted as a
 * command log ({@link dev.strata.paramserver.RegistryLog}). Manifests, upload, the admin API and the CLI come
 * with issue 4.
 */
package dev.strata.paramserver;
