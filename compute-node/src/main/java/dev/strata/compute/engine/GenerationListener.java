package dev.strata.compute.engine;

/**
 * Receives a request's tokens and its end, on the engine's thread: implementations must return quickly (hand the
 * event to a queue rather than write to a slow client). An exception thrown here cancels the request.
 */
public interface GenerationListener
{
    /** A token was generated. */
    default void onToken(final TokenEvent event)
    {
    }

    /** The request ended; always called exactly once. */
    void onComplete(Completion completion);
}
