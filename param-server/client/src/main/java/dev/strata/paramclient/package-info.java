/**
 * The parameter service's client side, a module of its own so that a compute node depends on it and not on the
 * server (no Jetty, RocksDB, Chronicle Map or AWS SDK on a node's classpath): {@link dev.strata.paramclient.ParamClient}
 * (the admin API over HTTP, answering with the records of {@link dev.strata.paramclient.ServiceInfo}),
 * {@link dev.strata.paramclient.BlockClient} (block pulls over Aeron) and {@link dev.strata.paramclient.Manifest}
 * (a version's tensors and block ids, binary-encoded).
 */
package dev.strata.paramclient;
