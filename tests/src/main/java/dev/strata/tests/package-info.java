/**
 * System tests across processes and the benchmarks' harness. Empty until there is more than one process.
 */
package dev.strata.tests;
