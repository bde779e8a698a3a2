package dev.strata.compute.gguf;

/**
 * A GGUF file that cannot be read: truncated, malformed, or using something Strata does not support.
 * The message names the file position or the item at fault.
 */
public final class GgufFormatException extends RuntimeException
{
    public GgufFormatException(final String message)
    {
        super(message);
    }

    public GgufFormatException(final String message, final Throwable cause)
    {
        super(message, cause);
    }
}
