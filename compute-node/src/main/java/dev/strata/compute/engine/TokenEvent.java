package dev.strata.compute.engine;

/**
 * One generated token.
 *
 * @param token       its id.
 * @param text        the text it completes (possibly empty: part of a character, or held back while it may be the
 *                    start of a stop string; a stop token adds none).
 * @param logprob     its log probability under the model (NaN unless asked for).
 * @param topTokens   the most likely tokens at this step, best first (empty unless asked for).
 * @param topLogprobs their log probabilities.
 */
public record TokenEvent(int token, String text, float logprob, int[] topTokens, float[] topLogprobs)
{
}
