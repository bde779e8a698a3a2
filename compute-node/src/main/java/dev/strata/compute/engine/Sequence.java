package dev.strata.compute.engine;

import dev.strata.compute.sampling.Sampler;

import java.util.Arrays;

/**
 * The state of one request inside the engine: its tokens (prompt, then generated), how many of them have their keys
 * and values in the pool ({@code computed}), its block table, its sampler and its text. Owned by the engine thread.
 */
final class Sequence
{
    final long id;
    final GenerationRequest request;
    final GenerationListener listener;
    final Sampler sampler;
    /** The text, or null without a tokenizer. */
    final TextStream text;
    /** Computes the KV of its tokens and stops there: no logits, no sampling; its blocks go to the listener. */
    final boolean prefillOnly;
    final int promptLength;
    final long submittedNanos;

    int[] tokens;
    int length;
    /** Positions whose keys and values are in the pool. */
    int computed;
    int[] blocks = new int[4];
    int blockCount;
    /** Full blocks registered in (or found in) the prefix cache, and the chain hash after each. */
    int published;
    long[] chain = new long[4];

    int generated;
    int cachedTokens;
    int preemptions;
    long firstScheduledNanos;
    long firstTokenNanos;
    boolean finished;
    /** Where a prefill-only sequence's blocks go. */
    Engine.PrefillListener prefilled;
    /** Times each token was generated, and the distinct tokens generated, when the request has penalties. */
    private int[] generatedCounts;
    private int[] distinct = new int[16];
    private int distinctCount;

    Sequence(final long id, final GenerationRequest request, final GenerationListener listener, final Sampler sampler,
        final TextStream text, final long submittedNanos, final boolean prefillOnly)
    {
        this.prefillOnly = prefillOnly;
        this.id = id;
        this.request = request;
        this.listener = listener;
        this.sampler = sampler;
        this.text = text;
        this.promptLength = request.prompt().length;
        this.tokens = Arrays.copyOf(request.prompt(), promptLength + Math.min(request.maxTokens(), 1024));
        this.length = promptLength;
        this.submittedNanos = submittedNanos;
        for (final int t : request.prompt())
        {
            sampler.accept(t);
        }
    }

    void append(final int token)
    {
        if (length == tokens.length)
        {
            tokens = Arrays.copyOf(tokens, tokens.length * 2);
        }
        tokens[length++] = token;
    }

    void addBlock(final int id)
    {
        if (blockCount == blocks.length)
        {
            blocks = Arrays.copyOf(blocks, blocks.length * 2);
        }
        blocks[blockCount++] = id;
    }

    void setChain(final int index, final long hash)
    {
        if (index >= chain.length)
        {
            chain = Arrays.copyOf(chain, Math.max(chain.length * 2, index + 1));
        }
        chain[index] = hash;
    }

    long chainBefore(final int block)
    {
        return block == 0 ? 0L : chain[block - 1];
    }

    /** Tokens not yet in the pool (at least one for a sequence that waits for logits). */
    int pending()
    {
        return length - computed;
    }

    /** OpenAI's presence and frequency penalties over the tokens generated so far. */
    void penalize(final float[] logits, final float presence, final float frequency)
    {
        for (int i = 0; i < distinctCount; i++)
        {
            final int t = distinct[i];
            logits[t] -= presence + frequency * generatedCounts[t];
        }
    }

    /** Counts a generated token for {@link #penalize}. */
    void countGenerated(final int token, final int vocab)
    {
        if (generatedCounts == null)
        {
            generatedCounts = new int[vocab];
        }
        if (generatedCounts[token]++ == 0)
        {
            if (distinctCount == distinct.length)
            {
                distinct = Arrays.copyOf(distinct, distinctCount * 2);
            }
            distinct[distinctCount++] = token;
        }
    }

    int[] generatedTokens()
    {
        return Arrays.copyOfRange(tokens, promptLength, length);
    }
}
