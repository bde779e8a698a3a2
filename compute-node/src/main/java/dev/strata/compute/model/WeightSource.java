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

    /** Unpins {@code layer} (and the experts of it that {@link #experts} pinned). */
    void release(int layer);

    /**
     * Mixture of experts, for sources that stream experts one by one: pins and returns the weights of
     * {@code experts} of an acquired {@code layer}, blocking until they are available; they stay pinned until the
     * layer is released. Only called when {@link #acquire} returned a layer without expert weights.
     */
    default ExpertWeights experts(final int layer, final int[] experts)
    {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " returns every expert with acquire");
    }

    /**
     * Some experts of a layer, indexed by expert id (entries not asked for may be null).
     *
     * @param gate per expert, {@code (ffnDim, dim)}.
     * @param up   per expert, {@code (ffnDim, dim)}.
     * @param down per expert, {@code (dim, ffnDim)}.
     */
    record ExpertWeights(dev.strata.compute.tensor.WeightTensor[] gate, dev.strata.compute.tensor.WeightTensor[] up,
        dev.strata.compute.tensor.WeightTensor[] down)
    {
    }

    /**
     * The engine sampled {@code count} tokens in the step that just ran (one per sequence with logits): a batched step
     * decodes several tokens per pass over the weights. For statistics only; nothing by default.
     */
    default void tokensSampled(final int count)
    {
    }

    @Override
    void close();
}
