package dev.strata.compute.model;

/**
 * Where the forward pass gets its weights. The math asks for one layer at a time and says when it is done with
 * it, so an implementation may hold only a window of layers in memory (streaming blocks from the parameter
 * service, prefetching the next layers while this one computes) without the forward pass knowing.
 * <p>
 * Contract: between {@link #acquire(int)} and the matching {@link #release(int)} the returned tensors stay
 * valid and unchanged; after release they may be unmapped or evicted. {@link #globals()} stay valid until
 * {@link #close()}. Calls come from the one thread that runs the forward pass.
 */
public interface WeightSource extends AutoCloseable
{
    ModelConfig config();

    GlobalWeights globals();

    /** Pins and returns the weights of {@code layer}, blocking until they are available. */
    LayerWeights acquire(int layer);

    /** Unpins {@code layer}. */
    void release(int layer);

    @Override
    void close();
}
