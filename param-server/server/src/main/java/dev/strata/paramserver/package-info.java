/**
 * The parameter service: {@link dev.strata.paramserver.ParamService} (a {@code Context}, {@code launch} and
 * {@code close}), block serving over Aeron ({@link dev.strata.paramserver.BlockServer}, an Agrona agent whose cold
 * reads run off its thread), the model registry as a deterministic state machine over commands
 * ({@link dev.strata.paramserver.ModelRegistry}) persisted as a command log
 * ({@link dev.strata.paramserver.RegistryLog}), and the HTTP admin API. Its clients live in
 * {@code dev.strata.paramclient} (module {@code param-server/client}).
 */
package dev.strata.paramserver;
