package dev.strata.tiering;

import java.io.IOException;

/** A block that cannot be served: unknown, corrupt in every tier that holds it, or unreachable. */
public final class BlockStoreException extends IOException
{
    /** What went wrong, so callers can react (retry on UNAVAILABLE, not on UNKNOWN). */
    public enum Reason
    {
        UNKNOWN, CORRUPT, UNAVAILABLE
    }

    private final Reason reason;

    public BlockStoreException(final Reason reason, final String message, final Throwable cause)
    {
        super(message, cause);
        this.reason = reason;
    }

    public Reason reason()
    {
        return reason;
    }
}
