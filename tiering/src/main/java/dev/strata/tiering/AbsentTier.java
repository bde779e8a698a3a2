package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.lang.foreign.MemorySegment;
import java.util.Set;

/**
 * The tier a store has when it has none at that level (no SSD): holds nothing, accepts nothing. It lets the
 * store's read and scrub paths treat every level alike instead of checking for a missing tier at each use.
 */
final class AbsentTier implements Tier
{
    static final AbsentTier SSD = new AbsentTier("ssd");

    private final String name;

    private AbsentTier(final String name)
    {
        this.name = name;
    }

    @Override
    public String name()
    {
        return name;
    }

    @Override
    public MemorySegment get(final BlockId id)
    {
        return null;
    }

    @Override
    public boolean put(final BlockId id, final MemorySegment bytes)
    {
        return false;
    }

    @Override
    public boolean delete(final BlockId id)
    {
        return false;
    }

    @Override
    public boolean contains(final BlockId id)
    {
        return false;
    }

    @Override
    public Set<BlockId> ids()
    {
        return Set.of();
    }

    @Override
    public long usedBytes()
    {
        return 0;
    }

    @Override
    public void close()
    {
    }
}
