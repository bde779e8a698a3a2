/**
 * Aeron transport: media driver lifecycle, SBE codecs, request/response and bulk streams.
 * Not built yet (issue 4); the module exists so the fixed top level builds.
 */
package dev.strata.transport;
