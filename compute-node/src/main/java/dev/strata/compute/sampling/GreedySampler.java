package dev.strata.compute.sampling;

/** Repetition penalty, then argmax (lowest id on ties). */
final class GreedySampler implements Sampler
{
    private final RepetitionPenalty penalty;

    GreedySampler(final SamplerConfig config)
    {
        this.penalty = new RepetitionPenalty(config.repeatPenalty(), config.repeatLastN());
    }

    @Override
    public int sample(final float[] logits)
    {
        if (logits.length == 0)
        {
            throw new IllegalArgumentException("logits must not be empty");
        }
        penalty.apply(logits);
        return argmax(logits);
    }

    @Override
    public void accept(final int token)
    {
        penalty.accept(token);
    }

    @Override
    public void reset()
    {
        penalty.reset();
    }

    /** Index of the largest value, the lowest index on ties; NaN values are skipped (index 0 if all are NaN). */
    static int argmax(final float[] logits)
    {
        int best = 0;
        float bestValue = Float.NEGATIVE_INFINITY;
        boolean found = false;
        for (int i = 0; i < logits.length; i++)
        {
            final float v = logits[i];
            if (v > bestValue || (!found && v == bestValue))
            {
                best = i;
                bestValue = v;
                found = true;
            }
        }
        return best;
    }
}
