package dev.strata.compute.tensor;

/** A tensor uses a ggml type that Strata has no kernels for. */
public final class UnsupportedTensorTypeException extends IllegalArgumentException
{
    public UnsupportedTensorTypeException(final String message)
    {
        super(message);
    }
}
