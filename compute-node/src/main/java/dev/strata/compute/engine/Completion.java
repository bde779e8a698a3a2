package dev.strata.compute.engine;

/**
 * How a request ended.
 *
 * @param tokens           the generated tokens (a stop token included).
 * @param text             the generated text (cut before a stop string; empty without a tokenizer).
 * @param reason           why it ended.
 * @param promptTokens     tokens of the prompt.
 * @param cachedTokens     prompt tokens whose KV came from the prefix cache.
 * @param preemptions      times the request was preempted and recomputed.
 * @param queueNanos       from submission to the first step that ran it.
 * @param firstTokenNanos  from submission to the first generated token.
 * @param totalNanos       from submission to the end.
 * @param error            the error of a request that ended with {@link FinishReason#ERROR}, else null.
 */
public record Completion(int[] tokens, String text, FinishReason reason, int promptTokens, int cachedTokens,
    int preemptions, long queueNanos, long firstTokenNanos, long totalNanos, String error)
{
    public int completionTokens()
    {
        return tokens.length;
    }
}
