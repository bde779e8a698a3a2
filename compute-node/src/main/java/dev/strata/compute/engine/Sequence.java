package dev.strata.compute.engine;

import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.tokenizer.StreamingDecoder;

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
    final StreamingDecoder decoder;
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
    final StringBuilder text = new StringBuilder();
    /** Characters of {@link #text} already handed to the listener. */
    int emitted;
    boolean finished;
    /** Times each token was generated, when the request has presence or frequency penalties. */
    int[] generatedCounts;

    Sequence(final long id, final GenerationRequest request, final GenerationListener listener, final Sampler sampler,
        final StreamingDecoder decoder, final long submittedNanos)
    {
        this.id = id;
        this.request = request;
        this.listener = listener;
        this.sampler = sampler;
        this.decoder = decoder;
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

    int[] generatedTokens()
    {
        return Arrays.copyOfRange(tokens, promptLength, length);
    }
}
