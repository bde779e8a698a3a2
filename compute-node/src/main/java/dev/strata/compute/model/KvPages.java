package dev.strata.compute.model;

/**
 * Keys and values of one sequence as float pages, as the attention kernels read them: the key of (layer, position)
 * is {@code keyPage(layer, position)[offset(position) ..]}, {@code kvDim} floats, and every page holds
 * {@link #pageTokens()} consecutive positions starting at a multiple of it, one key (and one value) every
 * {@code offset(p + 1) - offset(p)} floats.
 */
interface KvPages
{
    float[] keyPage(int layer, int position);

    float[] valuePage(int layer, int position);

    int offset(int position);

    int pageTokens();
}
