package dev.strata.compute.engine;

import dev.strata.compute.sampling.SamplerConfig;

import java.util.List;
import java.util.Objects;

/**
 * What one request asks of the engine.
 *
 * @param prompt       prompt token ids (BOS included if wanted), at least one.
 * @param sampling     sampling settings and seed of this request.
 * @param maxTokens    most tokens to generate, at least 1.
 * @param stopTokens   token ids that end the request besides the model's end-of-generation tokens.
 * @param stopStrings  texts that end the request; the text is cut before the first one found (needs a tokenizer).
 * @param logprobs     -1 for no log probabilities, else how many of the most likely alternatives to report with each
 *                     token's own (0 to 20).
 * @param presencePenalty  subtracted once from the logit of every token already generated (OpenAI's
 *                         {@code presence_penalty}, -2 to 2).
 * @param frequencyPenalty subtracted from the logit of every generated token once per time it was generated
 *                         (OpenAI's {@code frequency_penalty}, -2 to 2).
 * @param ignoreEos        keep generating past the model's end-of-generation tokens (benchmarks: a fixed output
 *                         length); {@code stopTokens} still stop.
 * @param resumed          how many tokens at the end of the prompt this request generated before it moved to
 *                         another node (a failover): they count for the presence and frequency penalties, and the
 *                         seeded sampler skips the draws they took, so the move does not change what follows.
 */
public record GenerationRequest(int[] prompt, SamplerConfig sampling, int maxTokens, int[] stopTokens,
    List<String> stopStrings, int logprobs, float presencePenalty, float frequencyPenalty, boolean ignoreEos,
    int resumed)
{
    /** Not resumed. */
    public GenerationRequest(final int[] prompt, final SamplerConfig sampling, final int maxTokens,
        final int[] stopTokens, final List<String> stopStrings, final int logprobs, final float presencePenalty,
        final float frequencyPenalty, final boolean ignoreEos)
    {
        this(prompt, sampling, maxTokens, stopTokens, stopStrings, logprobs, presencePenalty, frequencyPenalty,
            ignoreEos, 0);
    }

    /** Stopping at end-of-generation tokens. */
    public GenerationRequest(final int[] prompt, final SamplerConfig sampling, final int maxTokens,
        final int[] stopTokens, final List<String> stopStrings, final int logprobs, final float presencePenalty,
        final float frequencyPenalty)
    {
        this(prompt, sampling, maxTokens, stopTokens, stopStrings, logprobs, presencePenalty, frequencyPenalty, false);
    }

    /** Without presence and frequency penalties. */
    public GenerationRequest(final int[] prompt, final SamplerConfig sampling, final int maxTokens,
        final int[] stopTokens, final List<String> stopStrings, final int logprobs)
    {
        this(prompt, sampling, maxTokens, stopTokens, stopStrings, logprobs, 0f, 0f, false);
    }

    public static final int MAX_TOP_LOGPROBS = 20;

    public GenerationRequest
    {
        Objects.requireNonNull(prompt, "prompt");
        Objects.requireNonNull(sampling, "sampling");
        stopTokens = stopTokens == null ? new int[0] : stopTokens.clone();
        stopStrings = stopStrings == null ? List.of() : List.copyOf(stopStrings);
        prompt = prompt.clone();
        if (prompt.length == 0)
        {
            throw new IllegalArgumentException("empty prompt: at least one token is needed");
        }
        if (resumed < 0 || resumed >= prompt.length)
        {
            throw new IllegalArgumentException("resumed must be in [0, " + prompt.length + "), got " + resumed);
        }
        if (maxTokens < 1)
        {
            throw new IllegalArgumentException("maxTokens must be >= 1, got " + maxTokens);
        }
        if (logprobs < -1 || logprobs > MAX_TOP_LOGPROBS)
        {
            throw new IllegalArgumentException("logprobs must be -1 (none) or 0.." + MAX_TOP_LOGPROBS + ", got " +
                logprobs);
        }
        if (!(presencePenalty >= -2f && presencePenalty <= 2f) || !(frequencyPenalty >= -2f && frequencyPenalty <= 2f))
        {
            throw new IllegalArgumentException("presence and frequency penalties must be in [-2, 2], got " +
                presencePenalty + " and " + frequencyPenalty);
        }
        for (final String s : stopStrings)
        {
            if (s == null || s.isEmpty())
            {
                throw new IllegalArgumentException("stop strings must not be empty");
            }
        }
    }

    /** Whether {@code token} ends this request: a stop token, or an end-of-generation token unless {@code ignoreEos}. */
    public boolean stopsAt(final int token, final java.util.function.IntPredicate endOfGeneration)
    {
        if (!ignoreEos && endOfGeneration.test(token))
        {
            return true;
        }
        for (final int t : stopTokens)
        {
            if (t == token)
            {
                return true;
            }
        }
        return false;
    }

    /**
     * This request moved to another node after generating {@code generated}: the prompt followed by them, the rest
     * of the token budget, and {@link #resumed} set so that penalties and the seeded sampler go on where they were.
     */
    public GenerationRequest resumedAfter(final int[] generated)
    {
        final int[] p = java.util.Arrays.copyOf(prompt, prompt.length + generated.length);
        System.arraycopy(generated, 0, p, prompt.length, generated.length);
        return new GenerationRequest(p, sampling, maxTokens - generated.length, stopTokens, stopStrings, logprobs,
            presencePenalty, frequencyPenalty, ignoreEos, resumed + generated.length);
    }

    /** The same request without stop strings (a router applies them to the text it assembles). */
    public GenerationRequest withoutStopStrings()
    {
        return new GenerationRequest(prompt, sampling, maxTokens, stopTokens, null, logprobs, presencePenalty,
            frequencyPenalty, ignoreEos, resumed);
    }

    /** A request with no stop strings, stop tokens or log probabilities. */
    public static GenerationRequest of(final int[] prompt, final SamplerConfig sampling, final int maxTokens)
    {
        return new GenerationRequest(prompt, sampling, maxTokens, null, null, -1, 0f, 0f, false);
    }
}
