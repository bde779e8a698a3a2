package dev.strata.compute.engine;

/** Why a request ended. */
public enum FinishReason
{
    /** An end-of-generation token, a stop token or a stop string. */
    STOP,
    /** {@code maxTokens} generated, or the context is full. */
    LENGTH,
    /** Cancelled by the caller. */
    CANCELLED,
    /** The engine could not run it (the error says why). */
    ERROR
}
