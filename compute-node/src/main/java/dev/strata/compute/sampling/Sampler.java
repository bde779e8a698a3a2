package dev.strata.compute.sampling;

/**
 * Picks the next token from a vector of logits. Instances keep state (the random generator and the recent tokens
 * for the repetition penalty) and are not thread-safe: use one per generation stream.
 * <p>
 * Typical use: for each step, {@code token = sampler.sample(logits)} then {@code sampler.accept(token)}. Prompt
 * tokens may be passed to {@link #accept(int)} too so that the repetition penalty sees them, as llama.cpp does.
 */
public interface Sampler
{
    /**
     * Samples a token id.
     * <p>
     * <b>The array may be modified in place</b> (the repetition penalty is applied to it directly to avoid copying
     * a vocabulary-sized array every step); callers that need the raw logits afterwards must pass a copy.
     * NaN logits are never chosen; {@code -Infinity} masks a token. The stochastic chain needs at least one finite
     * logit.
     *
     * @param logits one logit per vocabulary entry; not empty.
     * @return the chosen token id, in {@code [0, logits.length)}.
     * @throws IllegalArgumentException if {@code logits} is empty, or (stochastic sampling) has no finite logit.
     */
    int sample(float[] logits);

    /**
     * Records a token as part of the context, for the repetition penalty window.
     *
     * @param token a token id, {@code >= 0}. Ids beyond the vocabulary passed to {@link #sample} are ignored there.
     * @throws IllegalArgumentException if {@code token} is negative.
     */
    void accept(int token);

    /** Forgets the accepted tokens and re-seeds the random generator, returning to the state after creation. */
    void reset();

    /**
     * Advances the random generator past {@code samples} calls of {@link #sample} (each takes one draw, or none when
     * greedy): a sequence resumed elsewhere draws what it would have drawn. Nothing for a greedy sampler.
     */
    default void skip(final int samples)
    {
    }

    /**
     * Builds the sampler for a configuration: greedy (repetition penalty then argmax, lowest id on ties) when
     * {@link SamplerConfig#temperature()} is {@code <= 0}; otherwise the chain repetition penalty → top-k → top-p →
     * min-p → temperature → softmax → seeded draw, in llama.cpp's order.
     * <p>
     * Cost per call is O(V) for the vocabulary size V plus O(V log k) for top-k. When top-k is disabled but top-p is
     * active, only the tokens that can belong to the nucleus are sorted (all V in the worst case, a flat
     * distribution).
     *
     * @param config the parameters.
     * @return a new sampler.
     */
    static Sampler create(final SamplerConfig config)
    {
        return config.isGreedy() ? new GreedySampler(config) : new ChainSampler(config);
    }
}
