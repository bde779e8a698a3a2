package dev.strata.compute.sampling;

import java.util.Arrays;
import java.util.random.RandomGenerator;
import java.util.random.RandomGeneratorFactory;

/**
 * llama.cpp's sampler chain: repetition penalty → top-k → top-p → min-p → temperature → softmax → draw.
 * <p>
 * Candidates are tracked as token ids in {@link #ids} (the first {@code count} entries). When ordered, they are in
 * descending logit order with ties broken by ascending id, so the outcome for a seed does not depend on how equal
 * logits happen to be arranged. Top-k uses a bounded heap (O(V log k)); without top-k, top-p sorts only the tokens
 * near the top that can be in the nucleus (a full sort in the worst case of a flat distribution).
 * Working arrays are kept between calls, so steady-state sampling does not allocate.
 */
final class ChainSampler implements Sampler
{
    private static final String ALGORITHM = "L64X128MixRandom";
    /** First logit distance below the maximum tried by {@link #nucleusWithoutTopK}; doubled until enough mass. */
    private static final double CUT_STEP = 8.0;
    /** Sort key of NaN: that of -Infinity, so NaN sorts after every real logit and is never preferred. */
    private static final long NAN_KEY = (long)~sortableBits(Float.NEGATIVE_INFINITY) << 32;

    private final SamplerConfig config;
    private final RepetitionPenalty penalty;
    private RandomGenerator random;

    private int[] ids = new int[0];
    private long[] keys = new long[0];
    private double[] weights = new double[0];

    ChainSampler(final SamplerConfig config)
    {
        this.config = config;
        this.penalty = new RepetitionPenalty(config.repeatPenalty(), config.repeatLastN());
        this.random = newRandom(config.seed());
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
        random = newRandom(config.seed());
    }

    @Override
    public void skip(final int samples)
    {
        for (int i = 0; i < samples; i++)
        {
            random.nextDouble(); // draw() takes exactly one per sample
        }
    }

    @Override
    public int sample(final float[] logits)
    {
        final int vocab = logits.length;
        if (vocab == 0)
        {
            throw new IllegalArgumentException("logits must not be empty");
        }
        ensureCapacity(vocab);
        penalty.apply(logits);

        final int topK = config.topK();
        final float topP = config.topP();
        int count;
        final boolean ordered;
        final float max;
        if (topK > 0 && topK < vocab)
        {
            count = selectTopK(logits, topK);
            ordered = true;
            max = requireFinite(logits[ids[0]]);
            if (topP < 1.0f)
            {
                double total = 0.0;
                for (int i = 0; i < count; i++)
                {
                    total += weight(logits[ids[i]], max, 1.0f);
                }
                count = nucleus(logits, count, max, topP * total);
            }
        }
        else if (topP < 1.0f)
        {
            max = requireFinite(max(logits));
            count = nucleusWithoutTopK(logits, max, topP);
            ordered = true;
        }
        else
        {
            max = requireFinite(max(logits));
            for (int i = 0; i < vocab; i++)
            {
                ids[i] = i;
            }
            count = vocab;
            ordered = false;
        }

        if (config.minP() > 0.0f)
        {
            count = minP(logits, count, max, ordered);
        }
        return draw(logits, count, max);
    }

    /** Keeps the k best candidates (descending, ties by id) in ids[0..k). */
    private int selectTopK(final float[] logits, final int k)
    {
        final long[] heap = keys;
        for (int i = 0; i < k; i++)
        {
            heap[i] = key(logits[i], i);
        }
        // Max-heap on the key (the worst kept candidate at the root).
        for (int i = (k >>> 1) - 1; i >= 0; i--)
        {
            siftDown(heap, i, k);
        }
        for (int i = k; i < logits.length; i++)
        {
            final long key = key(logits[i], i);
            if (key < heap[0])
            {
                heap[0] = key;
                siftDown(heap, 0, k);
            }
        }
        Arrays.sort(heap, 0, k);
        for (int i = 0; i < k; i++)
        {
            ids[i] = (int)heap[i];
        }
        return k;
    }

    private static void siftDown(final long[] heap, final int start, final int size)
    {
        int parent = start;
        final long value = heap[parent];
        while (true)
        {
            int child = 2 * parent + 1;
            if (child >= size)
            {
                break;
            }
            if (child + 1 < size && heap[child + 1] > heap[child])
            {
                child++;
            }
            if (heap[child] <= value)
            {
                break;
            }
            heap[parent] = heap[child];
            parent = child;
        }
        heap[parent] = value;
    }

    /**
     * Top-p over the whole vocabulary. Rather than sorting every token, only the tokens with a logit of at least
     * {@code cut} are sorted, lowering the cut until their mass reaches the target: they form a prefix of the full
     * descending order, so the nucleus found in them is the one a full sort would give.
     */
    private int nucleusWithoutTopK(final float[] logits, final float max, final float p)
    {
        final int vocab = logits.length;
        double total = 0.0;
        for (int i = 0; i < vocab; i++)
        {
            total += weight(logits[i], max, 1.0f);
        }
        final double target = p * total;
        double drop = CUT_STEP;
        while (true)
        {
            final double cut = max - drop;
            int count = 0;
            double mass = 0.0;
            for (int i = 0; i < vocab; i++)
            {
                final float logit = logits[i];
                if (logit >= cut)
                {
                    keys[count++] = key(logit, i);
                    mass += weight(logit, max, 1.0f);
                }
            }
            // Once the cut is below every finite logit, mass is the same sum as total, so the loop ends.
            if (mass >= target)
            {
                Arrays.sort(keys, 0, count);
                for (int i = 0; i < count; i++)
                {
                    ids[i] = (int)keys[i];
                }
                return nucleus(logits, count, max, target);
            }
            drop *= 2.0;
        }
    }

    /** The smallest ordered prefix whose softmax mass (temperature 1) reaches target; at least one token. */
    private int nucleus(final float[] logits, final int count, final float max, final double target)
    {
        double cumulative = 0.0;
        for (int i = 0; i < count; i++)
        {
            cumulative += weight(logits[ids[i]], max, 1.0f);
            if (cumulative >= target)
            {
                return i + 1;
            }
        }
        return count;
    }

    /** Keeps candidates with p >= minP * pmax, i.e. logit >= max + ln(minP); at least one token. */
    private int minP(final float[] logits, final int count, final float max, final boolean ordered)
    {
        final double threshold = max + Math.log(config.minP());
        if (ordered)
        {
            for (int i = 1; i < count; i++)
            {
                if (!(logits[ids[i]] >= threshold))
                {
                    return i;
                }
            }
            return count;
        }
        int kept = 0;
        for (int i = 0; i < count; i++)
        {
            final int id = ids[i];
            if (logits[id] >= threshold)
            {
                ids[kept++] = id;
            }
        }
        return kept;
    }

    /** Temperature, softmax over the candidates, then one draw. */
    private int draw(final float[] logits, final int count, final float max)
    {
        final float temperature = config.temperature();
        double total = 0.0;
        for (int i = 0; i < count; i++)
        {
            final double w = weight(logits[ids[i]], max, temperature);
            weights[i] = w;
            total += w;
        }
        final double target = random.nextDouble() * total;
        double cumulative = 0.0;
        int last = ids[0];
        for (int i = 0; i < count; i++)
        {
            final double w = weights[i];
            if (w > 0.0)
            {
                cumulative += w;
                last = ids[i];
                if (cumulative > target)
                {
                    return last;
                }
            }
        }
        return last;
    }

    /** exp((logit - max) / t), or 0 for NaN and -Infinity. */
    private static double weight(final float logit, final float max, final float temperature)
    {
        return logit > Float.NEGATIVE_INFINITY ? Math.exp(((double)logit - max) / temperature) : 0.0;
    }

    private static float requireFinite(final float max)
    {
        if (!Float.isFinite(max))
        {
            throw new IllegalArgumentException("sampling needs at least one finite logit, the largest is " + max);
        }
        return max;
    }

    private static float max(final float[] logits)
    {
        float max = Float.NEGATIVE_INFINITY;
        boolean nanOnly = true;
        for (final float v : logits)
        {
            if (v > max)
            {
                max = v;
            }
            nanOnly &= Float.isNaN(v);
        }
        return nanOnly ? Float.NaN : max;
    }

    /**
     * A long that orders candidates best first: the high half is the bitwise complement of an order-preserving
     * int image of the logit (larger logit, smaller key), the low half the token id (smaller id first on ties).
     */
    private static long key(final float logit, final int id)
    {
        if (logit != logit)
        {
            return NAN_KEY | id;
        }
        return ((long)~sortableBits(logit) << 32) | id;
    }

    /** Maps a non-NaN float to an int with the same ordering. */
    private static int sortableBits(final float value)
    {
        final int bits = Float.floatToRawIntBits(value == 0.0f ? 0.0f : value);
        return bits ^ ((bits >> 31) & 0x7FFFFFFF);
    }

    private void ensureCapacity(final int vocab)
    {
        if (ids.length < vocab)
        {
            ids = new int[vocab];
            keys = new long[vocab];
            weights = new double[vocab];
        }
    }

    private static RandomGenerator newRandom(final long seed)
    {
        return RandomGeneratorFactory.of(ALGORITHM).create(seed);
    }
}
