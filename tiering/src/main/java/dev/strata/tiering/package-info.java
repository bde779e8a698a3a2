/**
 * Blocks and tiers: memory, SSD (RocksDB) and object storage, and the tiered block store.
 * Not built yet (issue 3); the module exists so the fixed top level builds.
 */
package dev.strata.tiering;
