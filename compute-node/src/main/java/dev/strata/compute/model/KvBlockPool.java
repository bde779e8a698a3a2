package dev.strata.compute.model;

import dev.strata.compute.tensor.HalfFloats;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Objects;

/**
 * The KV memory of an engine: one off-heap region cut into fixed-size blocks of {@link #blockTokens()} positions,
 * with reference counts, a free list and a prefix cache of full blocks.
 *
 * <h2>Block layout</h2>
 * Block {@code b} is the {@link #blockBytes()} bytes at {@code b * blockBytes} of {@link #segment()}. Within it,
 * every layer's keys then values, each a region of {@link #regionBytes()}, position-major: elements little-endian
 * F32 or IEEE F16, or for {@link KvType#Q8} int8 followed by the region's scales ({@link KvType}):
 * <pre>
 *   region (layer l, kind k: 0 = key, 1 = value) at (l * 2 + k) * regionBytes
 *   element (slot s, i) of a region at (s * kvDim + i) * elementBytes
 *   Q8 only: scale (slot s, key-value head h) at blockTokens * kvDim + (s * kvHeads + h) * 4, little-endian F32;
 *            element i of head h = i / headSize is int8 * that scale
 *   slot s of block j of a sequence holds position j * blockTokens + s; keys are stored after RoPE.
 * </pre>
 * The bytes depend only on (model, kvType, blockTokens), never on the process that wrote them, so a block can be
 * copied to another node's pool as it is.
 *
 * <h2>Ownership</h2>
 * A block is free (on the free list), referenced ({@code refCount > 0}, by the block tables of running sequences),
 * or cached (reference count 0 but registered in the prefix cache, evictable, least recently released first).
 * {@link #allocate()} takes a free block, else evicts the least recently used cached one.
 *
 * <h2>Prefix cache</h2>
 * A full block is registered under the key (model version digest, hash of the chain of blocks before it, its own
 * tokens): the tokens are compared exactly, the chain through a 64-bit hash. A block found under a key is shared by
 * every sequence whose prompt starts with the same tokens under the same model version; another version's lookups
 * never see it.
 * <p>
 * Not thread-safe: one engine thread owns the pool.
 */
public final class KvBlockPool implements AutoCloseable
{
    /**
     * How keys and values are stored. {@link #Q8}: per position and key-value head, int8 values and one F32 scale
     * (max |x| / 127, symmetric, round half to even): half the bytes of F16; each element within 1/254 of the largest
     * magnitude of its head. (llama.cpp's {@code q8_0} cache scales blocks of 32 elements, and vLLM's FP8 cache one
     * scale per tensor.)
     */
    public enum KvType
    {
        F32(4), F16(2), Q8(1);

        final int bytes;

        KvType(final int bytes)
        {
            this.bytes = bytes;
        }

        /** Bytes of one element (Q8's scales come on top: {@link KvBlockPool#regionBytes()}). */
        public int bytes()
        {
            return bytes;
        }

        public static KvType parse(final String s)
        {
            return switch (s.toLowerCase(java.util.Locale.ROOT))
            {
                case "f32" -> F32;
                case "f16" -> F16;
                case "q8" -> Q8;
                default -> throw new IllegalArgumentException("KV type is f16, f32 or q8, not " + s);
            };
        }
    }

    private static final ValueLayout.OfFloat SCALE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(
        java.nio.ByteOrder.LITTLE_ENDIAN);

    /** Most blocks a pool may have (block ids are ints, offsets longs). */
    public static final int MAX_BLOCKS = 1 << 24;

    /** Key of a full block in the prefix cache. */
    private record PrefixKey(String version, long parent, TokenRun tokens)
    {
    }

    /** The tokens of one block, compared by value. */
    private record TokenRun(int[] ids)
    {
        @Override
        public boolean equals(final Object o)
        {
            return o instanceof TokenRun t && Arrays.equals(ids, t.ids);
        }

        @Override
        public int hashCode()
        {
            return Arrays.hashCode(ids);
        }
    }

    private final int layers;
    private final int kvDim;
    private final int headSize;
    private final int kvHeads;
    private final int blockTokens;
    private final KvType type;
    private final long regionBytes;
    private final long blockBytes;
    private final int blocks;
    private final Arena arena;
    private final MemorySegment segment;
    private final int[] refCount;
    private final int[] freeList;
    private int freeCount;
    private final PrefixKey[] keyOf;
    private final Map<PrefixKey, Integer> cache = new HashMap<>();
    private final LinkedHashSet<Integer> evictable = new LinkedHashSet<>();
    private long lookups;
    private long hits;
    private long evictions;
    private int peakInUse;

    /**
     * @param config      the model whose keys and values the blocks hold.
     * @param type        storage type.
     * @param blockTokens positions per block.
     * @param budgetBytes memory for all blocks; the pool holds {@code budgetBytes / blockBytes} blocks.
     */
    public KvBlockPool(final ModelConfig config, final KvType type, final int blockTokens, final long budgetBytes)
    {
        if (blockTokens < 1 || blockTokens > 4096)
        {
            throw new IllegalArgumentException("invalid blockTokens=" + blockTokens + " (1..4096)");
        }
        this.layers = config.layers();
        this.kvDim = config.kvDim();
        this.headSize = config.headSize();
        this.kvHeads = config.kvHeads();
        this.blockTokens = blockTokens;
        this.type = Objects.requireNonNull(type, "type");
        this.regionBytes = regionBytes(config, type, blockTokens);
        this.blockBytes = blockBytes(config, type, blockTokens);
        final long count = budgetBytes / blockBytes;
        if (count < 1)
        {
            throw new IllegalArgumentException("KV memory of " + budgetBytes + " bytes holds no block of " +
                blockBytes + " bytes (" + blockTokens + " positions x " + layers + " layers x 2 x " + kvDim + " x " +
                type + ")");
        }
        this.blocks = (int)Math.min(count, MAX_BLOCKS);
        this.arena = Arena.ofShared();
        this.segment = dev.strata.compute.tensor.HugePages.allocate(arena, blocks * blockBytes);
        this.refCount = new int[blocks];
        this.freeList = new int[blocks];
        this.keyOf = new PrefixKey[blocks];
        for (int i = 0; i < blocks; i++)
        {
            freeList[i] = blocks - 1 - i; // lowest ids first
        }
        this.freeCount = blocks;
    }

    /** Bytes of one block: every layer's keys and values of {@code blockTokens} positions. */
    public static long blockBytes(final ModelConfig config, final KvType type, final int blockTokens)
    {
        return 2L * config.layers() * regionBytes(config, type, blockTokens);
    }

    /** Bytes of one layer's keys (or values) in a block: the elements, and for Q8 the scales after them. */
    static long regionBytes(final ModelConfig config, final KvType type, final int blockTokens)
    {
        final long elements = (long)blockTokens * config.kvDim() * type.bytes;
        return type == KvType.Q8 ? elements + 4L * blockTokens * config.kvHeads() : elements;
    }

    public int blockTokens()
    {
        return blockTokens;
    }

    public int blockCount()
    {
        return blocks;
    }

    public long blockBytes()
    {
        return blockBytes;
    }

    /** Bytes of one layer's keys, or values, in a block (see the class comment). */
    public long regionBytes()
    {
        return regionBytes;
    }

    public KvType type()
    {
        return type;
    }

    /** The whole pool's memory (see the class comment for the layout). */
    public MemorySegment segment()
    {
        return segment;
    }

    /** The bytes of block {@code id}. */
    public MemorySegment block(final int id)
    {
        return segment.asSlice(id * blockBytes, blockBytes);
    }

    /** Blocks that {@link #allocate()} can still hand out (free plus evictable cached ones). */
    public int available()
    {
        return freeCount + evictable.size();
    }

    /** Blocks referenced by at least one sequence. */
    public int inUse()
    {
        return blocks - available();
    }

    /** Blocks of {@code tokens} positions. */
    public int blocksFor(final int tokens)
    {
        return (tokens + blockTokens - 1) / blockTokens;
    }

    /** Most blocks referenced at once so far. */
    public int peakInUse()
    {
        return peakInUse;
    }

    public int refCount(final int id)
    {
        return refCount[id];
    }

    /** Full-block prefix lookups so far. */
    public long prefixLookups()
    {
        return lookups;
    }

    /** Lookups that found a cached block. */
    public long prefixHits()
    {
        return hits;
    }

    public long evictions()
    {
        return evictions;
    }

    /** Frees every cached block no sequence references: the prefix cache then holds only blocks in use. */
    public void forgetCached()
    {
        for (final int id : evictable)
        {
            cache.remove(keyOf[id]);
            keyOf[id] = null;
            freeList[freeCount++] = id;
        }
        evictable.clear();
    }

    /** Counts lookups, hits and evictions from zero again, and the peak from the blocks in use now. */
    public void resetCounters()
    {
        lookups = 0;
        hits = 0;
        evictions = 0;
        peakInUse = inUse();
    }

    /** Takes a block (reference count 1), evicting the least recently used cached block if none is free; -1 if none. */
    public int allocate()
    {
        final int id;
        if (freeCount > 0)
        {
            id = freeList[--freeCount];
        }
        else if (!evictable.isEmpty())
        {
            final var it = evictable.iterator();
            id = it.next();
            it.remove();
            cache.remove(keyOf[id]);
            keyOf[id] = null;
            evictions++;
        }
        else
        {
            return -1;
        }
        refCount[id] = 1;
        peakInUse = Math.max(peakInUse, inUse());
        return id;
    }

    /** Adds a reference to a block already referenced. */
    public void retain(final int id)
    {
        if (refCount[id] <= 0)
        {
            throw new IllegalStateException("block " + id + " is not referenced");
        }
        refCount[id]++;
    }

    /** Drops a reference; at zero the block becomes evictable (cached) or free. */
    public void release(final int id)
    {
        if (refCount[id] <= 0)
        {
            throw new IllegalStateException("block " + id + " released more often than referenced");
        }
        if (--refCount[id] == 0)
        {
            if (keyOf[id] != null)
            {
                evictable.add(id);
            }
            else
            {
                freeList[freeCount++] = id;
            }
        }
    }

    /** The chain hash of a block whose predecessors hash to {@code parent} and whose tokens are given. */
    public static long chainHash(final long parent, final int[] tokens, final int from, final int count)
    {
        long h = parent * 0x9E3779B97F4A7C15L + 0x632BE59BD9B4E019L;
        for (int i = from; i < from + count; i++)
        {
            h = mix(h ^ tokens[i]);
        }
        return mix(h ^ count);
    }

    private static long mix(long z)
    {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * Looks up the cached block of tokens {@code [from, from + blockTokens)} after a chain hashing to
     * {@code parent}, under model version {@code version}; returns it with a reference added, or -1.
     */
    public int lookup(final String version, final long parent, final int[] tokens, final int from)
    {
        lookups++;
        final Integer id = cache.get(new PrefixKey(version, parent,
            new TokenRun(Arrays.copyOfRange(tokens, from, from + blockTokens))));
        if (id == null)
        {
            return -1;
        }
        hits++;
        if (refCount[id] == 0)
        {
            evictable.remove(id);
        }
        refCount[id]++;
        peakInUse = Math.max(peakInUse, inUse());
        return id;
    }

    /**
     * Registers a full, referenced block as holding tokens {@code [from, from + blockTokens)} after a chain hashing
     * to {@code parent}. Does nothing if the block is registered already or another block holds that key.
     */
    public void publish(final int id, final String version, final long parent, final int[] tokens, final int from)
    {
        if (refCount[id] <= 0)
        {
            throw new IllegalStateException("block " + id + " is not referenced");
        }
        if (keyOf[id] != null)
        {
            return;
        }
        final PrefixKey key = new PrefixKey(version, parent,
            new TokenRun(Arrays.copyOfRange(tokens, from, from + blockTokens)));
        if (cache.putIfAbsent(key, id) == null)
        {
            keyOf[id] = key;
        }
    }

    /** Byte offset of the (layer, kind) region of block {@code id} in the pool. */
    private long region(final int id, final int layer, final int kind)
    {
        return id * blockBytes + (layer * 2L + kind) * regionBytes;
    }

    /** Stores the key and value of one position. */
    public void write(final int id, final int layer, final int slot, final float[] k, final int ko, final float[] v,
        final int vo)
    {
        store(region(id, layer, 0), slot, k, ko);
        store(region(id, layer, 1), slot, v, vo);
    }

    private void store(final long region, final int slot, final float[] x, final int xo)
    {
        final long off = region + (long)slot * kvDim * type.bytes;
        switch (type)
        {
            case F32 -> HalfFloats.storeFloats(x, xo, segment, off, kvDim);
            case F16 -> HalfFloats.fromFloats(x, xo, segment, off, kvDim);
            case Q8 ->
            {
                for (int h = 0; h < kvHeads; h++)
                {
                    final int x0 = xo + h * headSize;
                    float max = 0;
                    for (int i = 0; i < headSize; i++)
                    {
                        max = Math.max(max, Math.abs(x[x0 + i]));
                    }
                    final float d = max / 127f;
                    final float id = d != 0 ? 1f / d : 0f;
                    final long q0 = off + (long)h * headSize;
                    for (int i = 0; i < headSize; i++)
                    {
                        segment.set(ValueLayout.JAVA_BYTE, q0 + i, (byte)Math.rint(x[x0 + i] * id));
                    }
                    segment.set(SCALE, scaleOffset(region, slot, h), d);
                }
            }
        }
    }

    private long scaleOffset(final long region, final int slot, final int head)
    {
        return region + (long)blockTokens * kvDim + ((long)slot * kvHeads + head) * 4;
    }

    /**
     * Reads {@code n} elements starting at element {@code i0} of the (layer, kind, slot) vector into {@code dst}; they
     * may run on into the next slots of the block (as Q8, dequantized).
     *
     * @param kind 0 for the key, 1 for the value.
     */
    public void read(final int id, final int layer, final int kind, final int slot, final int i0, final int n,
        final float[] dst, final int dstOffset)
    {
        final long region = region(id, layer, kind);
        final long off = region + ((long)slot * kvDim + i0) * type.bytes;
        switch (type)
        {
            case F32 -> HalfFloats.copyFloats(segment, off, dst, dstOffset, n);
            case F16 -> HalfFloats.toFloats(segment, off, dst, dstOffset, n);
            case Q8 ->
            {
                // a run of elements within one (slot, head) at a time: one scale each
                int e = slot * kvDim + i0;
                int done = 0;
                while (done < n)
                {
                    final int s = e / kvDim;
                    final int h = (e % kvDim) / headSize;
                    final int run = Math.min(n - done, headSize - (e % kvDim) % headSize);
                    HalfFloats.bytesToFloats(segment, region + e, segment.get(SCALE, scaleOffset(region, s, h)), dst,
                        dstOffset + done, run);
                    e += run;
                    done += run;
                }
            }
        }
    }

    @Override
    public void close()
    {
        arena.close();
    }
}
