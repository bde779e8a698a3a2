package dev.strata.compute.engine;

import java.util.concurrent.CompletableFuture;

/** A submitted request: its id, its end, and a way to cancel it. */
public interface RequestHandle
{
    long id();

    /** Completes when the request ends, however it ends. */
    CompletableFuture<Completion> completion();

    /** Ends the request and frees what it holds; harmless once it has ended. */
    void cancel();
}
