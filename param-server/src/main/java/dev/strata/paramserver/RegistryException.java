package dev.strata.paramserver;

/** A registry command that cannot be applied; the registry is unchanged. */
public final class RegistryException extends IllegalStateException
{
    public RegistryException(final String message)
    {
        super(message);
    }
}
