package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.io.IOException;

/**
 * A tier found its own copy of a block damaged while reading it (a checksum of the backend failed), as opposed to
 * being unreachable: the store treats it like a copy that fails its hash, drops it and reads the next tier.
 */
public final class CorruptCopyException extends IOException
{
    private final BlockId id;

    public CorruptCopyException(final BlockId id, final String message, final Throwable cause)
    {
        super(message, cause);
        this.id = id;
    }

    public BlockId id()
    {
        return id;
    }
}
