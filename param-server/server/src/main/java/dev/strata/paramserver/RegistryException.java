package dev.strata.paramserver;

/**
 * A registry command that cannot be applied; the registry is unchanged. Its {@link Kind} says why, so that the
 * admin API answers with a status by type (404, 400, 409) and never by reading the message.
 */
public final class RegistryException extends IllegalStateException
{
    /** Why a command was refused. */
    public enum Kind
    {
        /** No such model, version or label. */
        NOT_FOUND,
        /** Malformed input: a bad name, digest or weight. */
        INVALID,
        /** Valid, but not in this state (leased, wrong state, blocks missing, upload in progress). */
        CONFLICT
    }

    private final Kind kind;

    public RegistryException(final Kind kind, final String message)
    {
        super(message);
        this.kind = kind;
    }

    public Kind kind()
    {
        return kind;
    }
}
