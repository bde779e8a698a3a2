package dev.strata.compute.engine;

/**
 * What serves generation requests: an {@link Engine} in this process, or a router over the engines of other
 * processes. The HTTP API depends on this and nothing more.
 */
public interface GenerationService
{
    /**
     * Queues a request. Throws {@link IllegalArgumentException} at once if it can never run.
     */
    RequestHandle submit(GenerationRequest request, GenerationListener listener);

    /** Most positions of one sequence (prompt and generated). */
    int maxContext();

    /** Token ids run from 0 to this, exclusive. */
    int vocabSize();

    /** What runs and waits now, for metrics and admission. */
    Engine.Stats stats();
}
