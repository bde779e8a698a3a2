/**
 * Aeron transport: the media driver's lifecycle (embedded by default, external as an option) and the client
 * through which the parameter service and compute nodes open channels ({@code aeron:ipc} on one host,
 * {@code aeron:udp} across hosts). Wire messages are declared in {@code src/main/resources/strata-messages.xml}; their SBE codecs
 * ({@code dev.strata.transport.sbe}) are generated at build time. Request/response, back-pressure and
 * chunked bulk streams come with issue 4.
 */
package dev.strata.transport;
