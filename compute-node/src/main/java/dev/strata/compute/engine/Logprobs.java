package dev.strata.compute.engine;

/**
 * Log probabilities of one step under the model's raw distribution (log-softmax of the logits, before any
 * sampling setting): the chosen token's, and the {@code top} most likely tokens' (best first, ties to the lower id).
 */
record Logprobs(float logprob, int[] topTokens, float[] topLogprobs)
{
    static Logprobs of(final float[] logits, final int token, final int top)
    {
        float max = Float.NEGATIVE_INFINITY;
        for (final float l : logits)
        {
            max = Math.max(max, l);
        }
        double sum = 0;
        for (final float l : logits)
        {
            sum += Math.exp(l - max);
        }
        final float logZ = (float)(max + Math.log(sum));
        final int[] ids = new int[top];
        final float[] lps = new float[top];
        int count = 0;
        for (int i = 0; i < logits.length; i++)
        {
            final float l = logits[i];
            if (count < top || (count > 0 && l > logits[ids[count - 1]]))
            {
                int j = Math.min(count, top - 1);
                while (j > 0 && logits[ids[j - 1]] < l)
                {
                    ids[j] = ids[j - 1];
                    j--;
                }
                ids[j] = i;
                count = Math.min(count + 1, top);
            }
        }
        for (int i = 0; i < top; i++)
        {
            lps[i] = logits[ids[i]] - logZ;
        }
        return new Logprobs(logits[token] - logZ, ids, lps);
    }
}
