package dev.strata.compute.model;

import java.util.ArrayList;
import java.util.List;

/**
 * The key/value cache of one sequence, in pages of {@link #PAGE_TOKENS} positions allocated as the sequence
 * grows (not a dense buffer for the whole context up front). For each layer and position it holds the
 * {@code kvDim} floats of the key and of the value, after RoPE.
 */
public final class KvCache implements KvPages
{
    public static final int PAGE_TOKENS = 256;

    private final int layers;
    private final int kvDim;
    private final int maxTokens;
    private final List<List<float[]>> keys = new ArrayList<>();
    private final List<List<float[]>> values = new ArrayList<>();
    private int capacity;

    public KvCache(final ModelConfig config, final int maxTokens)
    {
        this.layers = config.layers();
        this.kvDim = config.kvDim();
        this.maxTokens = Math.min(maxTokens, config.contextLength());
        for (int l = 0; l < layers; l++)
        {
            keys.add(new ArrayList<>());
            values.add(new ArrayList<>());
        }
    }

    public int maxTokens()
    {
        return maxTokens;
    }

    /** Makes room for positions {@code [0, tokens)}. */
    public void ensureCapacity(final int tokens)
    {
        if (tokens > maxTokens)
        {
            throw new IllegalArgumentException("sequence of " + tokens + " tokens exceeds the context of " + maxTokens);
        }
        while (capacity < tokens)
        {
            for (int l = 0; l < layers; l++)
            {
                keys.get(l).add(new float[PAGE_TOKENS * kvDim]);
                values.get(l).add(new float[PAGE_TOKENS * kvDim]);
            }
            capacity += PAGE_TOKENS;
        }
    }

    /** The page holding the key of {@code (layer, position)}; the vector starts at {@link #offset(int)}. */
    @Override
    public float[] keyPage(final int layer, final int position)
    {
        return keys.get(layer).get(position / PAGE_TOKENS);
    }

    @Override
    public float[] valuePage(final int layer, final int position)
    {
        return values.get(layer).get(position / PAGE_TOKENS);
    }

    @Override
    public int offset(final int position)
    {
        return (position % PAGE_TOKENS) * kvDim;
    }

    @Override
    public int pageTokens()
    {
        return PAGE_TOKENS;
    }

    /** Bytes allocated. */
    public long byteSize()
    {
        return 2L * layers * capacity * kvDim * Float.BYTES;
    }
}
