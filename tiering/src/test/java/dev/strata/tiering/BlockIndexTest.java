package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BlockIndexTest
{
    @TempDir
    Path dir;

    @Test
    void shouldSurviveRestart() throws Exception
    {
        final BlockId a = BlockId.of(new byte[]{1, 2, 3});
        try (BlockIndex index = BlockIndex.open(dir.resolve("index.cm"), 1000))
        {
            index.stored(a, BlockIndex.OBJECT_BIT);
            index.stored(a, BlockIndex.SSD_BIT);
            index.accessed(a);
            index.accessed(a);
        }
        try (BlockIndex index = BlockIndex.open(dir.resolve("index.cm"), 1000))
        {
            final BlockIndex.Entry e = index.get(a);
            assertEquals(3, e.length());
            assertEquals(BlockIndex.SSD_BIT | BlockIndex.OBJECT_BIT, e.tiers());
            assertEquals(2, e.accesses());
            assertTrue(e.lastAccessMillis() > 0);
            index.removed(a, BlockIndex.SSD_BIT);
            index.removed(a, BlockIndex.OBJECT_BIT);
            assertNull(index.get(a), "a block held nowhere leaves the index");
        }
    }

    @Test
    void shouldReconcileWithWhatTiersActuallyHold() throws Exception
    {
        try (DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("object"));
            RocksDbTier ssd = new RocksDbTier(dir.resolve("ssd"), 64L << 20);
            BlockIndex index = BlockIndex.open(dir.resolve("index.cm"), 1000))
        {
            final MemorySegment x = MemoryTierTest.block(1, 5000);
            final MemorySegment y = MemoryTierTest.block(2, 6000);
            final MemorySegment z = MemoryTierTest.block(3, 7000);
            final BlockId xi = BlockId.of(x), yi = BlockId.of(y), zi = BlockId.of(z);
            object.put(xi, x);
            object.put(yi, y);
            ssd.put(yi, y);
            index.stored(xi, BlockIndex.OBJECT_BIT | BlockIndex.SSD_BIT); // claims an SSD copy that is not there
            index.stored(zi, BlockIndex.OBJECT_BIT);                      // a block no tier holds
            // y is held by both tiers but unknown to the index (a crash after the writes)

            assertEquals(3, index.reconcile(ssd, object));
            assertEquals(BlockIndex.OBJECT_BIT, index.get(xi).tiers());
            assertEquals(BlockIndex.OBJECT_BIT | BlockIndex.SSD_BIT, index.get(yi).tiers());
            assertEquals(6000, index.get(yi).length());
            assertNull(index.get(zi));
            assertEquals(0, index.reconcile(ssd, object), "a second pass finds nothing to change");
        }
    }

    @Test
    void shouldFollowStoreWritesAndPromotions() throws Exception
    {
        try (DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("object"));
            RocksDbTier ssd = new RocksDbTier(dir.resolve("ssd"), 64L << 20);
            MemoryTier memory = new MemoryTier(1L << 20, EvictionPolicy.lru());
            BlockIndex index = BlockIndex.open(dir.resolve("index.cm"), 1000);
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                .memory(memory).ssd(ssd).object(object).index(index).maxBlockBytes(1L << 20).prefetchThreads(1)))
        {
            final BlockId id = store.put(MemoryTierTest.block(4, 4000));
            assertEquals(BlockIndex.OBJECT_BIT, index.get(id).tiers());
            store.acquire(id).close();
            assertEquals(BlockIndex.OBJECT_BIT | BlockIndex.SSD_BIT, index.get(id).tiers());
            assertEquals(1, index.get(id).accesses());
        }
    }
}
