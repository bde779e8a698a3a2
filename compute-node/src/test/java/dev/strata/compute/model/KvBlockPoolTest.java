package dev.strata.compute.model;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The block pool: its documented byte layout, reference counts, the free list and LRU eviction of cached blocks. */
class KvBlockPoolTest
{
    private static final ModelConfig CONFIG = new ModelConfig("llama", 64, 3, 4, 2, 16, 96, 100, 512, 1e-5f, 10000f,
        16, ModelConfig.RopeStyle.NORMAL, false, 0, 0);

    @Test
    void shouldStoreEachElementWhereTheLayoutSays() throws Exception
    {
        final int kvDim = CONFIG.kvDim();
        for (final KvBlockPool.KvType type : new KvBlockPool.KvType[]{KvBlockPool.KvType.F32, KvBlockPool.KvType.F16})
        {
            try (KvBlockPool pool = new KvBlockPool(CONFIG, type, 8, 1L << 20))
            {
                assertEquals(2L * 3 * 8 * kvDim * type.bytes(), pool.blockBytes());
                final int a = pool.allocate();
                final int b = pool.allocate();
                final Random random = new Random(1);
                final float[] k = new float[kvDim];
                final float[] v = new float[kvDim];
                for (int i = 0; i < kvDim; i++)
                {
                    k[i] = random.nextFloat() * 8 - 4;
                    v[i] = random.nextFloat() * 8 - 4;
                }
                pool.write(b, 2, 5, k, 0, v, 0);
                // independently computed offsets: ((l * 2 + kind) * blockTokens + slot) * kvDim + i
                final MemorySegment block = pool.block(b);
                for (int i = 0; i < kvDim; i++)
                {
                    final long kOff = (((2L * 2 + 0) * 8 + 5) * kvDim + i) * type.bytes();
                    final long vOff = (((2L * 2 + 1) * 8 + 5) * kvDim + i) * type.bytes();
                    assertEquals(round(type, k[i]), element(block, type, kOff));
                    assertEquals(round(type, v[i]), element(block, type, vOff));
                }
                // a block's bytes copied into another pool's block read back the same (no process-bound state)
                try (KvBlockPool other = new KvBlockPool(CONFIG, type, 8, 1L << 20))
                {
                    final int c = other.allocate();
                    other.block(c).copyFrom(block);
                    final float[] back = new float[kvDim];
                    other.read(c, 2, 1, 5, 0, kvDim, back, 0);
                    for (int i = 0; i < kvDim; i++)
                    {
                        assertEquals(round(type, v[i]), back[i]);
                    }
                }
                assertTrue(a != b);
            }
        }
    }

    @Test
    void shouldStoreEightBitElementsAndTheirScalesWhereTheLayoutSays()
    {
        final int kvDim = CONFIG.kvDim();
        final int hs = CONFIG.headSize();
        final int kvHeads = CONFIG.kvHeads();
        final int bt = 8;
        try (KvBlockPool pool = new KvBlockPool(CONFIG, KvBlockPool.KvType.Q8, bt, 1L << 20))
        {
            // per layer and kind: bt x kvDim int8, then bt x kvHeads F32 scales
            final long region = (long)bt * kvDim + 4L * bt * kvHeads;
            assertEquals(2L * 3 * region, pool.blockBytes());
            pool.allocate();
            final int b = pool.allocate();
            final Random random = new Random(3);
            final float[][] k = new float[bt][kvDim];
            final float[][] v = new float[bt][kvDim];
            for (int s = 0; s < bt; s++)
            {
                for (int i = 0; i < kvDim; i++)
                {
                    k[s][i] = random.nextFloat() * 8 - 4;
                    v[s][i] = (float)random.nextGaussian() * (i == 5 ? 30 : 1); // one outlier in a head
                }
                if (s == 6)
                {
                    java.util.Arrays.fill(v[s], 0, hs, 0f); // a head of zeros: scale 0, no NaN
                }
                pool.write(b, 1, s, k[s], 0, v[s], 0);
            }
            final MemorySegment block = pool.block(b);
            for (int kind = 0; kind < 2; kind++)
            {
                final long r = (1L * 2 + kind) * region;
                for (int s = 0; s < bt; s++)
                {
                    final float[] x = kind == 0 ? k[s] : v[s];
                    for (int h = 0; h < kvHeads; h++)
                    {
                        float max = 0;
                        for (int i = 0; i < hs; i++)
                        {
                            max = Math.max(max, Math.abs(x[h * hs + i]));
                        }
                        final float d = block.get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN),
                            r + (long)bt * kvDim + (s * kvHeads + h) * 4L);
                        assertEquals(max / 127f, d, "scale of slot " + s + " head " + h);
                        for (int i = 0; i < hs; i++)
                        {
                            final byte q = block.get(ValueLayout.JAVA_BYTE, r + (long)s * kvDim + h * hs + i);
                            final float exact = d == 0 ? 0 : x[h * hs + i] / d;
                            // round to nearest: within half a step (and a float's rounding of the quotient)
                            assertTrue(Math.abs(q - exact) <= 0.5001f, "slot " + s + " [" + (h * hs + i) + "]: " + q +
                                " for " + exact);
                        }
                    }
                }
            }
            // reads dequantize, also when a read runs on from one slot into the next
            final float[] all = new float[3 * kvDim - 5];
            pool.read(b, 1, 1, 4, 5, all.length, all, 0);
            final float[] one = new float[kvDim];
            for (int e = 0; e < all.length; e++)
            {
                final int slot = 4 + (5 + e) / kvDim;
                final int i = (5 + e) % kvDim;
                pool.read(b, 1, 1, slot, 0, kvDim, one, 0);
                assertEquals(one[i], all[e], "element " + e);
                // exactly int8 x scale (the vector lanes and the scalar tail alike)
                final long r = (1L * 2 + 1) * region;
                final float d = block.get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN),
                    r + (long)bt * kvDim + (slot * kvHeads + i / hs) * 4L);
                assertEquals(block.get(ValueLayout.JAVA_BYTE, r + (long)slot * kvDim + i) * d, all[e], "element " + e);
                float max = 0;
                for (int j = i / hs * hs; j < i / hs * hs + hs; j++)
                {
                    max = Math.max(max, Math.abs(v[slot][j]));
                }
                assertTrue(Math.abs(all[e] - v[slot][i]) <= max / 254f * 1.001f, "element " + e + ": " + all[e] +
                    " for " + v[slot][i]);
            }
        }
    }

    @Test
    void shouldCountReferencesAndEvictCachedBlocksLeastRecentlyReleasedFirst()
    {
        final long blockBytes = 2L * 3 * 4 * CONFIG.kvDim() * 2;
        try (KvBlockPool pool = new KvBlockPool(CONFIG, KvBlockPool.KvType.F16, 4, 3 * blockBytes))
        {
            assertEquals(3, pool.blockCount());
            final int[] tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
            final int x = pool.allocate();
            final int y = pool.allocate();
            final int z = pool.allocate();
            assertEquals(-1, pool.allocate());
            pool.publish(x, "v", 0L, tokens, 0);
            pool.publish(y, "v", 7L, tokens, 4);
            pool.retain(x);
            pool.release(x);
            assertEquals(1, pool.refCount(x));
            pool.release(y); // cached, evictable
            pool.release(x); // cached, evictable, released after y
            pool.release(z); // not cached: free
            assertEquals(3, pool.available());
            assertEquals(0, pool.inUse());
            // the free block goes first, then the least recently released cached one (y), then x
            assertEquals(z, pool.allocate());
            assertEquals(y, pool.allocate());
            assertEquals(-1, pool.lookup("v", 7L, tokens, 4), "an evicted block is no longer found");
            assertEquals(x, pool.lookup("v", 0L, tokens, 0));
            assertEquals(-1, pool.allocate(), "x is referenced again, nothing left");
            pool.release(z);
            assertThrows(IllegalStateException.class, () -> pool.release(z));
            assertEquals(2, pool.prefixLookups());
            assertEquals(1, pool.prefixHits());
            assertEquals(1, pool.evictions());
        }
    }

    @Test
    void shouldForgetCachedBlocksThatNothingReferencesAndKeepTheReferencedOnes()
    {
        final long blockBytes = 2L * 3 * 4 * CONFIG.kvDim() * 2;
        try (KvBlockPool pool = new KvBlockPool(CONFIG, KvBlockPool.KvType.F16, 4, 3 * blockBytes))
        {
            final int[] tokens = {1, 2, 3, 4, 5, 6, 7, 8};
            final int x = pool.allocate();
            final int y = pool.allocate();
            pool.publish(x, "v", 0L, tokens, 0);
            pool.publish(y, "v", 7L, tokens, 4);
            pool.release(x); // cached, evictable
            pool.forgetCached();
            assertEquals(-1, pool.lookup("v", 0L, tokens, 0), "a forgotten block is no longer found");
            assertEquals(y, pool.lookup("v", 7L, tokens, 4), "a referenced block stays cached");
            assertEquals(2, pool.available());
            pool.resetCounters();
            assertEquals(0, pool.prefixLookups());
            assertEquals(0, pool.prefixHits());
            assertEquals(1, pool.peakInUse());
            pool.release(y);
            pool.release(y); // cached, evictable
            assertEquals(3, pool.available());
            assertTrue(pool.allocate() >= 0 && pool.allocate() >= 0 && pool.allocate() >= 0);
            // x went to the free list: only y had to be evicted
            assertEquals(1, pool.evictions());
        }
    }

    private static float round(final KvBlockPool.KvType type, final float f)
    {
        return type == KvBlockPool.KvType.F32 ? f : Float.float16ToFloat(Float.floatToFloat16(f));
    }

    private static float element(final MemorySegment block, final KvBlockPool.KvType type, final long offset)
    {
        return type == KvBlockPool.KvType.F32
            ? block.get(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), offset)
            : Float.float16ToFloat(block.get(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), offset));
    }
}
