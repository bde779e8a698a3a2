/**
 * The parameter service. Built so far: block serving over Aeron ({@link dev.strata.paramserver.BlockServer})
 * and its client ({@link dev.strata.paramserver.BlockClient}). The model registry (versions, manifests, labels,
 * leases), the admin API and the CLI come with issue 4.
 */
package dev.strata.paramserver;
