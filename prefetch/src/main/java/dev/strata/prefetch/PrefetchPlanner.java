package dev.strata.prefetch;

import org.agrona.collections.IntArrayList;
import org.agrona.collections.Long2LongHashMap;

/**
 * What a streaming node fetches ahead and what it evicts first, over units numbered by layer: layer {@code l},
 * and for a mixture of experts streamed one by one, expert {@code e} of layer {@code l} (expert unit
 * {@code l * experts + e}). Knows units, not models or buffers.
 * <ul>
 * <li><b>Layers</b> follow the cyclic order ({@link CyclicOrderPredictor}). The look-ahead starts at one layer,
 * grows by one when a prefetch arrives late ({@link #late()}) and shrinks when a prefetched unit is evicted
 * unused ({@link #wasted()}), within {@code 1..maxLookahead}.</li>
 * <li><b>Experts</b> of the next layer are guessed by a {@link TransitionPredictor} learned from the routing
 * trace; the number of guesses is the experts a token uses plus one.</li>
 * <li><b>Eviction</b>: {@link #distance} ranks a unit by how far ahead it is needed, the nearest over every
 * caller (several forward passes, a prefill and a decode, share one node's units): layers by the cyclic
 * order, a layer's experts right after it, the most used first.</li>
 * </ul>
 * Not thread-safe: the streaming source calls it under its lock.
 */
public final class PrefetchPlanner
{
    /** Routed experts kept for {@link #expertTrace()} at most. */
    private static final int MAX_TRACE = 1 << 22;

    private final int layers;
    private final int experts;
    private final int expertsUsed;
    private final int maxLookahead;
    private final CyclicOrderPredictor layerOrder;
    private final TransitionPredictor expertOrder;
    private final long[][] expertUse;
    private final IntArrayList trace = new IntArrayList();
    /** Each caller's current layer (caller id to layer): eviction keeps what any of them needs soon. */
    private final Long2LongHashMap positions = new Long2LongHashMap(-1);
    private int lookahead = 1;
    /** A fixed look-ahead set by an operator, or 0 for the adaptive one. */
    private int fixedLookahead;
    private long layerNanos = 1_000_000L;
    private long lastAcquire;
    private int lastExpert = -1;

    /**
     * @param layers       layers of the model.
     * @param experts      experts per layer when they are streamed one by one, else 0.
     * @param expertsUsed  experts a token is routed to (0 without expert units).
     * @param maxLookahead most layers prefetched ahead.
     */
    public PrefetchPlanner(final int layers, final int experts, final int expertsUsed, final int maxLookahead)
    {
        if (layers < 1 || experts < 0 || expertsUsed < 0 || expertsUsed > experts || maxLookahead < 1)
        {
            throw new IllegalArgumentException("invalid planner: layers=" + layers + " experts=" + experts +
                " expertsUsed=" + expertsUsed + " maxLookahead=" + maxLookahead);
        }
        this.layers = layers;
        this.experts = experts;
        this.expertsUsed = expertsUsed;
        this.maxLookahead = maxLookahead;
        this.layerOrder = new CyclicOrderPredictor(layers);
        this.expertOrder = experts > 0 ? new TransitionPredictor(layers * experts) : null;
        this.expertUse = new long[layers][Math.max(1, experts)];
    }

    /** Trains the expert predictor on a trace another node recorded, before the first token. */
    public void train(final AccessTrace expertTrace)
    {
        if (expertOrder == null)
        {
            throw new IllegalArgumentException("no experts are streamed one by one: an expert trace does not apply");
        }
        expertOrder.train(expertTrace);
    }

    /**
     * Caller {@code caller} starts layer {@code layer} at {@code nowNanos}: its position moves, and the time per
     * layer (a moving average, not across idle gaps of a second or more) is updated.
     */
    public void onAcquire(final long caller, final int layer, final long nowNanos)
    {
        positions.put(caller, layer);
        layerOrder.observe(layer);
        if (lastAcquire != 0 && nowNanos - lastAcquire > 0 && nowNanos - lastAcquire < 1_000_000_000L)
        {
            layerNanos += (nowNanos - lastAcquire - layerNanos) / 8;
        }
        lastAcquire = nowNanos;
    }

    /** The layers to prefetch after {@code layer}, nearest first (as many as the look-ahead). */
    public int[] layersAfter(final int layer)
    {
        return layerOrder.predict(layer, lookahead);
    }

    /** The layer after the look-ahead: the service is told to warm it ({@code PrefetchHint}). */
    public int hintAfter(final int layer)
    {
        return (layer + lookahead + 1) % layers;
    }

    /** How long until layer {@code to} is needed, seen from layer {@code from}: distance times time per layer. */
    public long neededInNanos(final int from, final int to)
    {
        return layerOrder.distance(from, to) * layerNanos;
    }

    /** Time per layer, as measured. */
    public long layerNanos()
    {
        return layerNanos;
    }

    public int lookahead()
    {
        return lookahead;
    }

    /**
     * Fixes the look-ahead at {@code depth} layers (at most the layers after the current one), or with 0 returns to
     * the adaptive look-ahead, which starts again at one layer. Takes effect at the next {@link #layersAfter}.
     */
    public void fixLookahead(final int depth)
    {
        if (depth < 0)
        {
            throw new IllegalArgumentException("invalid lookahead=" + depth);
        }
        fixedLookahead = Math.min(depth, Math.max(1, layers - 1));
        lookahead = depth == 0 ? 1 : fixedLookahead;
    }

    /** The fixed look-ahead, or 0 when it adapts. */
    public int fixedLookahead()
    {
        return fixedLookahead;
    }

    /** A prefetched unit was waited for: look further ahead (unless the look-ahead is fixed). */
    public void late()
    {
        if (fixedLookahead == 0)
        {
            lookahead = Math.min(maxLookahead, lookahead + 1);
        }
    }

    /** A prefetched unit was evicted unused: look less far ahead (unless the look-ahead is fixed). */
    public void wasted()
    {
        if (fixedLookahead == 0)
        {
            lookahead = Math.max(1, lookahead - 1);
        }
    }

    /** Layer {@code layer} routed to expert {@code expert}. */
    public void onRouted(final int layer, final int expert)
    {
        final int unit = layer * experts + expert;
        expertOrder.observe(unit);
        if (trace.size() < MAX_TRACE)
        {
            trace.addInt(unit);
        }
        expertUse[layer][expert]++;
        lastExpert = unit;
    }

    /**
     * The experts of the layer after {@code layer} the predictor expects after the experts just routed, most
     * likely first, at most one more than a token uses (to cover a second choice); as expert numbers.
     */
    public int[] expertGuesses(final int layer)
    {
        final int next = (layer + 1) % layers;
        final IntArrayList guesses = new IntArrayList();
        if (lastExpert < 0)
        {
            return new int[0];
        }
        for (final int unit : expertOrder.predict(lastExpert, 2 * experts))
        {
            if (unit / experts == next && guesses.size() < expertsUsed + 1)
            {
                guesses.addInt(unit % experts);
            }
        }
        return guesses.toIntArray();
    }

    /**
     * How far ahead a unit is needed (larger: evict first), the nearest over every caller: layers by the cyclic
     * order, scaled so that a layer's experts fit right after it, ranked by use (most used nearest).
     *
     * @param layerOf the unit's layer ({@code layers} for the global tensors, which are never evicted).
     * @param expert  the expert, or -1 for a layer unit.
     */
    public long distance(final int layerOf, final int expert)
    {
        final long step = experts + 2L;
        long nearest = Long.MAX_VALUE;
        final Long2LongHashMap.ValueIterator it = positions.values().iterator();
        while (it.hasNext())
        {
            nearest = Math.min(nearest, layerOrder.distance((int)it.nextValue(), layerOf));
        }
        final long d = (nearest == Long.MAX_VALUE ? layerOrder.distance(0, layerOf) : nearest) * step;
        if (expert < 0)
        {
            return d;
        }
        int rank = 0;
        final long[] use = expertUse[layerOf];
        for (int e = 0; e < experts; e++)
        {
            if (use[e] > use[expert] || (use[e] == use[expert] && e < expert))
            {
                rank++;
            }
        }
        return d + 1 + rank;
    }

    /** The expert units routed so far, in order (the first 4 Mi of them), for another node to train on. */
    public AccessTrace expertTrace()
    {
        return new AccessTrace(layers * experts, trace.toIntArray());
    }
}
