/**
 * Blocks and tiers: immutable, content-addressed weight blocks ({@link dev.strata.transport.BlockId}) kept across
 * a memory tier, an SSD tier (RocksDB) and an object tier (a local directory, or S3), behind one narrow
 * {@link dev.strata.tiering.Tier} interface.
 */
package dev.strata.tiering;

import dev.strata.transport.BlockId;
