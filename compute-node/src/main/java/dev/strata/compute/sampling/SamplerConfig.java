package dev.strata.compute.sampling;

/**
 * Sampling parameters, with llama.cpp's meaning and defaults.
 *
 * @param temperature   softmax temperature; {@code 0} selects greedy decoding (argmax). Must be finite and
 *                      {@code >= 0}. Default 0.8.
 * @param topK          keep only the {@code topK} most likely tokens; {@code 0} disables. Must be {@code >= 0}.
 *                      Default 40.
 * @param topP          nucleus sampling: keep the smallest set of most likely tokens whose probability mass is at
 *                      least {@code topP}; {@code 1} disables. Must be in {@code (0, 1]}. Default 0.95.
 * @param minP          keep tokens whose probability is at least {@code minP} times that of the most likely token;
 *                      {@code 0} disables. Must be in {@code [0, 1]}. Default 0.05.
 * @param repeatPenalty repetition penalty over the last {@code repeatLastN} accepted tokens: a positive logit is
 *                      divided by it, a negative one multiplied; {@code 1} disables. Must be finite and
 *                      {@code > 0}. Default 1.0 (off), as in current llama.cpp.
 * @param repeatLastN   how many of the most recently accepted tokens the penalty looks at; {@code 0} disables.
 *                      Must be {@code >= 0} (llama.cpp's {@code -1}, "whole context", is not supported). Default 64.
 * @param seed          seed of the random generator; the same seed and inputs give the same tokens.
 */
public record SamplerConfig(
    float temperature,
    int topK,
    float topP,
    float minP,
    float repeatPenalty,
    int repeatLastN,
    long seed)
{
    /** llama.cpp's default temperature. */
    public static final float DEFAULT_TEMPERATURE = 0.8f;
    /** llama.cpp's default top-k. */
    public static final int DEFAULT_TOP_K = 40;
    /** llama.cpp's default top-p. */
    public static final float DEFAULT_TOP_P = 0.95f;
    /** llama.cpp's default min-p. */
    public static final float DEFAULT_MIN_P = 0.05f;
    /** llama.cpp's default repetition penalty (off). */
    public static final float DEFAULT_REPEAT_PENALTY = 1.0f;
    /** llama.cpp's default repetition window. */
    public static final int DEFAULT_REPEAT_LAST_N = 64;

    /**
     * Validates the parameters.
     *
     * @throws IllegalArgumentException naming the parameter and the accepted range when one is out of range.
     */
    public SamplerConfig
    {
        if (!(temperature >= 0.0f) || Float.isInfinite(temperature))
        {
            throw new IllegalArgumentException(
                "temperature must be a finite number >= 0 (0 means greedy), got " + temperature);
        }
        if (topK < 0)
        {
            throw new IllegalArgumentException("topK must be >= 0 (0 disables top-k), got " + topK);
        }
        if (!(topP > 0.0f && topP <= 1.0f))
        {
            throw new IllegalArgumentException("topP must be in (0, 1] (1 disables top-p), got " + topP);
        }
        if (!(minP >= 0.0f && minP <= 1.0f))
        {
            throw new IllegalArgumentException("minP must be in [0, 1] (0 disables min-p), got " + minP);
        }
        if (!(repeatPenalty > 0.0f) || Float.isInfinite(repeatPenalty))
        {
            throw new IllegalArgumentException(
                "repeatPenalty must be a finite number > 0 (1 disables the penalty), got " + repeatPenalty);
        }
        if (repeatLastN < 0)
        {
            throw new IllegalArgumentException(
                "repeatLastN must be >= 0 (0 disables the penalty window), got " + repeatLastN);
        }
    }

    /**
     * llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty, window 64)
     * with the given seed.
     *
     * @param seed seed of the random generator.
     * @return the configuration.
     */
    public static SamplerConfig defaults(final long seed)
    {
        return new SamplerConfig(
            DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, DEFAULT_MIN_P,
            DEFAULT_REPEAT_PENALTY, DEFAULT_REPEAT_LAST_N, seed);
    }

    /**
     * Greedy decoding: always the most likely token (lowest id on ties), no repetition penalty.
     *
     * @return the configuration.
     */
    public static SamplerConfig greedy()
    {
        return new SamplerConfig(0.0f, 0, 1.0f, 0.0f, DEFAULT_REPEAT_PENALTY, DEFAULT_REPEAT_LAST_N, 0L);
    }

    /** @return {@code true} when {@link #temperature()} selects greedy decoding. */
    public boolean isGreedy()
    {
        return temperature <= 0.0f;
    }

    /** @return a copy with another temperature. */
    public SamplerConfig withTemperature(final float temperature)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }

    /** @return a copy with another top-k. */
    public SamplerConfig withTopK(final int topK)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }

    /** @return a copy with another top-p. */
    public SamplerConfig withTopP(final float topP)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }

    /** @return a copy with another min-p. */
    public SamplerConfig withMinP(final float minP)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }

    /** @return a copy with another repetition penalty and window. */
    public SamplerConfig withRepeatPenalty(final float repeatPenalty, final int repeatLastN)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }

    /** @return a copy with another seed. */
    public SamplerConfig withSeed(final long seed)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
    }
}
