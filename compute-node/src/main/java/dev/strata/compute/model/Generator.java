package dev.strata.compute.model;

import dev.strata.compute.sampling.Sampler;

import java.util.function.IntPredicate;

/**
 * Runs one sequence: the prompt in batches of up to {@link Llama#maxBatch()} tokens, then one token at a time,
 * sampling each next token from the logits, until a stop token, the token limit or the context end.
 * Timing is kept apart for prompt processing (prefill) and generation (decode).
 */
public final class Generator
{
    /** Receives each generated token as soon as it is sampled; returns false to stop. */
    @FunctionalInterface
    public interface TokenListener
    {
        boolean onToken(int token);
    }

    /**
     * What one generation did.
     *
     * @param tokens        the generated tokens (the stop token included if one ended the sequence).
     * @param promptTokens  tokens of the prompt.
     * @param prefillNanos  time to process the prompt (up to the first logits).
     * @param decodeNanos   time for the forward passes of the generated tokens after the first.
     * @param stopReason    why generation ended.
     */
    public record Result(int[] tokens, int promptTokens, long prefillNanos, long decodeNanos, StopReason stopReason)
    {
        public double prefillTokensPerSecond()
        {
            return prefillNanos == 0 ? 0 : promptTokens * 1e9 / prefillNanos;
        }

        /** Decode speed over the forward passes that produced tokens 2..n. */
        public double decodeTokensPerSecond()
        {
            final int passes = Math.max(0, tokens.length - 1);
            return decodeNanos == 0 ? 0 : passes * 1e9 / decodeNanos;
        }
    }

    public enum StopReason
    {
        STOP_TOKEN, LIMIT, CONTEXT, LISTENER
    }

    private final Llama model;

    public Generator(final Llama model)
    {
        this.model = model;
    }

    public Llama model()
    {
        return model;
    }

    /**
     * @param prompt        prompt token ids (BOS included if wanted), at least one.
     * @param maxNewTokens  most tokens to generate.
     * @param maxContext    most positions to use (capped by the model's context length).
     * @param sampler       picks each next token; its history is fed with the prompt and every generated token.
     * @param stop          tokens that end generation (e.g. end-of-generation tokens).
     * @param listener      sees each generated token.
     */
    public Result generate(final int[] prompt, final int maxNewTokens, final int maxContext, final Sampler sampler,
        final IntPredicate stop, final TokenListener listener)
    {
        if (prompt.length == 0)
        {
            throw new IllegalArgumentException("empty prompt: at least one token is needed");
        }
        final KvCache kv = new KvCache(model.config(), maxContext);
        if (prompt.length >= kv.maxTokens())
        {
            throw new IllegalArgumentException("prompt of " + prompt.length + " tokens does not fit the context of " +
                kv.maxTokens() + " tokens");
        }
        for (final int t : prompt)
        {
            sampler.accept(t);
        }
        final long t0 = System.nanoTime();
        float[] logits = null;
        for (int from = 0; from < prompt.length; from += model.maxBatch())
        {
            final int n = Math.min(model.maxBatch(), prompt.length - from);
            logits = model.forward(prompt, from, n, from, kv);
        }
        final long t1 = System.nanoTime();
        final int[] out = new int[maxNewTokens];
        int produced = 0;
        int pos = prompt.length;
        StopReason reason = StopReason.LIMIT;
        final int[] one = new int[1];
        while (produced < maxNewTokens)
        {
            final int token = sampler.sample(logits);
            sampler.accept(token);
            out[produced++] = token;
            if (stop.test(token))
            {
                reason = StopReason.STOP_TOKEN;
                break;
            }
            if (!listener.onToken(token))
            {
                reason = StopReason.LISTENER;
                break;
            }
            if (produced == maxNewTokens)
            {
                break;
            }
            if (pos >= kv.maxTokens())
            {
                reason = StopReason.CONTEXT;
                break;
            }
            one[0] = token;
            logits = model.forward(one, 0, 1, pos++, kv);
        }
        final long t2 = System.nanoTime();
        return new Result(java.util.Arrays.copyOf(out, produced), prompt.length, t1 - t0, t2 - t1, reason);
    }
}
