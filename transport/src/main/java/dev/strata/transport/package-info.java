/**
 * Aeron transport: the media driver's lifecycle (embedded by default, external as an option) and the client
 * through which the parameter service and compute nodes open channels ({@code aeron:ipc} on one host,
 * {@code aeron:udp} across hosts). Request/response with SBE codecs comes with issue 4.
 */
package dev.strata.transport;
