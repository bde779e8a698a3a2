package dev.strata.compute.sampling;

import java.util.Arrays;

/**
 * The last {@code n} accepted tokens and llama.cpp's repetition penalty over them: each distinct token of the window
 * has its logit divided by the penalty when positive, multiplied when negative (once, however often it occurs).
 */
final class RepetitionPenalty
{
    private final float penalty;
    private final int[] window;
    private final int[] scratch;
    private int next;
    private int size;

    RepetitionPenalty(final float penalty, final int lastN)
    {
        this.penalty = penalty;
        final int capacity = penalty == 1.0f ? 0 : lastN;
        this.window = new int[capacity];
        this.scratch = new int[capacity];
    }

    void accept(final int token)
    {
        if (token < 0)
        {
            throw new IllegalArgumentException("token id must be >= 0, got " + token);
        }
        if (window.length == 0)
        {
            return;
        }
        window[next] = token;
        next = next + 1 == window.length ? 0 : next + 1;
        if (size < window.length)
        {
            size++;
        }
    }

    void reset()
    {
        next = 0;
        size = 0;
    }

    void apply(final float[] logits)
    {
        if (size == 0)
        {
            return;
        }
        System.arraycopy(window, 0, scratch, 0, size);
        Arrays.sort(scratch, 0, size);
        int previous = -1;
        for (int i = 0; i < size; i++)
        {
            final int token = scratch[i];
            if (token == previous || token >= logits.length)
            {
                continue;
            }
            previous = token;
            final float logit = logits[token];
            logits[token] = logit <= 0.0f ? logit * penalty : logit / penalty;
        }
    }
}
