package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.Set;

/**
 * One storage tier of immutable blocks: memory, SSD or object storage. The interface is deliberately narrow
 * and never leaks a backend type (no RocksDB or S3 class crosses it).
 * <p>
 * A tier stores the bytes it is given under the id it is given and returns them as they are: it does not
 * verify content. Verification (every read, every tier) is the {@link TieredBlockStore}'s job, so a tier
 * holding a corrupt copy simply returns it, and the store counts a miss and repairs it.
 */
public interface Tier extends AutoCloseable
{
    /** Short name for metrics and errors: {@code memory}, {@code ssd}, {@code object}. */
    String name();

    /**
     * The stored bytes of a block, or {@code null} if this tier does not hold it. The segment stays valid
     * until the caller is done with it: tiers return copies (or, for the memory tier, pinned views; see
     * {@link MemoryTier}).
     *
     * @throws IOException if the tier cannot be read (e.g. object store unreachable).
     */
    MemorySegment get(BlockId id) throws IOException;

    /**
     * Stores a block. Idempotent: storing a block the tier already holds is a no-op.
     *
     * @return false if the tier could not make room for it within its budget (nothing stored).
     * @throws IOException if the write failed; the tier then holds no torn copy under this id.
     */
    boolean put(BlockId id, MemorySegment bytes) throws IOException;

    /** Removes a block; returns whether it was there. */
    boolean delete(BlockId id) throws IOException;

    boolean contains(BlockId id) throws IOException;

    /** Ids of every block held (for reconciliation at start-up). */
    Set<BlockId> ids() throws IOException;

    /** Bytes of blocks held. */
    long usedBytes();

    @Override
    void close() throws IOException;
}
