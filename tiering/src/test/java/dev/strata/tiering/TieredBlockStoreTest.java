package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TieredBlockStoreTest
{
    @TempDir
    Path dir;

    MemoryTier memory;
    RocksDbTier ssd;
    DirectoryObjectTier object;
    TieredBlockStore store;

    @BeforeEach
    void open() throws IOException
    {
        memory = new MemoryTier(8L << 20, EvictionPolicy.lru());
        ssd = new RocksDbTier(dir.resolve("ssd"), 64L << 20);
        object = new DirectoryObjectTier(dir.resolve("object"));
        store = TieredBlockStore.open(new TieredBlockStore.Context()
            .memory(memory).ssd(ssd).object(object).maxBlockBytes(16L << 20).prefetchThreads(2));
    }

    @AfterEach
    void close() throws IOException
    {
        store.close();
        memory.close();
        ssd.close();
        object.close();
    }

    @Test
    void shouldBeDurableInObjectTierOnPutAndPromoteOnRead() throws IOException
    {
        final MemorySegment content = MemoryTierTest.block(1, 1 << 20);
        final BlockId id = store.put(content);
        assertTrue(object.contains(id));
        assertFalse(memory.contains(id));
        try (TieredBlockStore.Pinned p = store.acquire(id))
        {
            assertEquals(-1, p.bytes().mismatch(content));
            assertEquals(1, memory.pins(id));
        }
        assertEquals(0, memory.pins(id));
        assertTrue(memory.contains(id), "promoted to memory");
        assertTrue(memory.refetchCost(id) > 0, "the fetch cost is recorded for the cost-aware policy");
        assertTrue(ssd.contains(id), "promoted to SSD");
        try (TieredBlockStore.Pinned p = store.acquire(id))
        {
            assertEquals(-1, p.bytes().mismatch(content));
        }
        final TieredBlockStore.Stats s = store.stats();
        assertEquals(1, s.hits()[TieredBlockStore.OBJECT]);
        assertEquals(1, s.hits()[TieredBlockStore.MEMORY]);
    }

    @Test
    void shouldRepairCorruptSsdCopyFromObjectTier() throws IOException
    {
        final MemorySegment content = MemoryTierTest.block(2, 1 << 20);
        final BlockId id = store.put(content);
        final byte[] bad = content.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        bad[12345] ^= 0x40;
        ssd.put(id, MemorySegment.ofArray(bad)); // a flipped byte on the SSD
        try (TieredBlockStore.Pinned p = store.acquire(id))
        {
            assertEquals(-1, p.bytes().mismatch(content), "corrupt bytes are never returned");
        }
        final TieredBlockStore.Stats s = store.stats();
        assertEquals(1, s.corrupt()[TieredBlockStore.SSD]);
        assertEquals(1, s.repairs());
        assertTrue(id.matches(new BlockCodec(false).decode(ssd.get(id))), "SSD copy repaired");
    }

    @Test
    void shouldDetectCorruptObjectCopyAndRepairItFromAGoodCopy() throws IOException
    {
        final MemorySegment content = MemoryTierTest.block(3, 300_000);
        final BlockId id = store.put(content);
        flipByteInObjectFile(id, 777);
        final BlockStoreException ex = assertThrows(BlockStoreException.class, () -> store.acquire(id));
        assertEquals(BlockStoreException.Reason.CORRUPT, ex.reason());
        assertEquals(1, store.stats().corrupt()[TieredBlockStore.OBJECT]);

        // with a good copy elsewhere (here the SSD), scrub rewrites the object copy
        ssd.put(id, new BlockCodec(false).encode(content));
        assertTrue(store.scrub(id));
        assertTrue(id.matches(new BlockCodec(false).decode(object.get(id))));
        try (TieredBlockStore.Pinned p = store.acquire(id))
        {
            assertEquals(-1, p.bytes().mismatch(content));
        }
    }

    @Test
    void shouldFetchOnceForConcurrentReadersOfMissingBlock() throws Exception
    {
        final MemorySegment content = MemoryTierTest.block(4, 2 << 20);
        final AtomicInteger objectReads = new AtomicInteger();
        final CountDownLatch release = new CountDownLatch(1);
        final Tier slowObject = new ForwardingTier(object)
        {
            @Override
            public MemorySegment get(final BlockId id) throws IOException
            {
                objectReads.incrementAndGet();
                try
                {
                    release.await(10, TimeUnit.SECONDS);
                }
                catch (final InterruptedException e)
                {
                    Thread.currentThread().interrupt();
                }
                return super.get(id);
            }
        };
        try (TieredBlockStore s = TieredBlockStore.open(new TieredBlockStore.Context()
            .memory(memory).object(slowObject).maxBlockBytes(16L << 20).prefetchThreads(1)))
        {
            final BlockId id = s.put(content);
            final ExecutorService pool = Executors.newFixedThreadPool(8);
            final List<Future<Boolean>> readers = new ArrayList<>();
            for (int i = 0; i < 8; i++)
            {
                readers.add(pool.submit(() ->
                {
                    try (TieredBlockStore.Pinned p = s.acquire(id))
                    {
                        return p.bytes().mismatch(content) == -1;
                    }
                }));
            }
            Thread.sleep(200); // let every reader reach the fetch
            release.countDown();
            for (final Future<Boolean> r : readers)
            {
                assertTrue(r.get(30, TimeUnit.SECONDS));
            }
            pool.shutdown();
            assertEquals(1, objectReads.get(), "one fetch for all readers");
        }
    }

    @Test
    void shouldKeepServingUpperTiersWhenObjectStoreIsUnreachable() throws Exception
    {
        final MemorySegment hot = MemoryTierTest.block(5, 1000);
        final MemorySegment cold = MemoryTierTest.block(6, 1000);
        final BlockId hotId = store.put(hot);
        final BlockId coldId = store.put(cold);
        store.acquire(hotId).close(); // now in memory and SSD
        final Tier down = new ForwardingTier(object)
        {
            @Override
            public MemorySegment get(final BlockId id) throws IOException
            {
                throw new IOException("connection refused");
            }
        };
        try (TieredBlockStore s = TieredBlockStore.open(new TieredBlockStore.Context()
            .memory(memory).ssd(ssd).object(down).maxBlockBytes(16L << 20).prefetchThreads(1)))
        {
            try (TieredBlockStore.Pinned p = s.acquire(hotId))
            {
                assertEquals(-1, p.bytes().mismatch(hot));
            }
            final BlockStoreException ex = assertThrows(BlockStoreException.class, () -> s.acquire(coldId));
            assertEquals(BlockStoreException.Reason.UNAVAILABLE, ex.reason());
            assertTrue(ex.getMessage().contains("connection refused"), ex.getMessage());
        }
    }

    @Test
    void shouldRejectUnknownEmptyAndOversizedBlocks()
    {
        final BlockId unknown = BlockId.of(new byte[]{1, 2, 3});
        final BlockStoreException ex = assertThrows(BlockStoreException.class, () -> store.acquire(unknown));
        assertEquals(BlockStoreException.Reason.UNKNOWN, ex.reason());
        assertThrows(IllegalArgumentException.class, () -> store.put(MemorySegment.ofArray(new byte[0])));
        final IllegalArgumentException big = assertThrows(IllegalArgumentException.class,
            () -> store.put(MemorySegment.ofArray(new byte[(16 << 20) + 1])));
        assertTrue(big.getMessage().contains("exceeds"), big.getMessage());
    }

    @Test
    void shouldPromoteAheadOfNeedWithPrefetchAndDropExpiredOnes() throws Exception
    {
        final BlockId id = store.put(MemoryTierTest.block(7, 4096));
        assertTrue(store.prefetch(id, 0, System.nanoTime() + TimeUnit.SECONDS.toNanos(30)).get(30, TimeUnit.SECONDS));
        assertTrue(memory.contains(id));
        final BlockId late = store.put(MemoryTierTest.block(8, 4096));
        assertFalse(store.prefetch(late, 0, System.nanoTime() - 1).get(30, TimeUnit.SECONDS));
        assertFalse(memory.contains(late));
        assertEquals(1, store.stats().expired());
    }

    @Test
    void shouldPublishHitsMissesBytesAndBudgetUseAsMetrics() throws IOException
    {
        final io.micrometer.core.instrument.simple.SimpleMeterRegistry registry =
            new io.micrometer.core.instrument.simple.SimpleMeterRegistry();
        try (TieredBlockStore s = TieredBlockStore.open(new TieredBlockStore.Context()
            .memory(memory).ssd(ssd).object(object).maxBlockBytes(16L << 20).prefetchThreads(1).meterRegistry(registry)))
        {
            final MemorySegment content = MemoryTierTest.block(9, 100_000);
            final BlockId id = s.put(content);
            s.acquire(id).close();
            s.acquire(id).close();
            assertEquals(1.0, registry.get("strata.tier.hits").tag("tier", "object").functionCounter().count());
            assertEquals(1.0, registry.get("strata.tier.hits").tag("tier", "memory").functionCounter().count());
            assertEquals(1.0, registry.get("strata.tier.misses").tag("tier", "memory").functionCounter().count());
            assertEquals(1.0, registry.get("strata.tier.misses").tag("tier", "ssd").functionCounter().count());
            assertEquals(200_000.0, registry.get("strata.tier.read.bytes").tag("tier", "memory").functionCounter().count()
                + registry.get("strata.tier.read.bytes").tag("tier", "object").functionCounter().count());
            assertEquals(100_000.0, registry.get("strata.tier.used.bytes").tag("tier", "memory").gauge().value());
            assertEquals(8.0 * (1 << 20), registry.get("strata.tier.memory.budget.bytes").gauge().value());
            assertEquals(1, registry.get("strata.tier.read.latency").tag("tier", "object").timer().count());
        }
    }

    @Test
    void shouldStoreCompressibleBlocksWithLz4AndOthersRaw() throws IOException
    {
        final byte[] text = new byte[1 << 20];
        for (int i = 0; i < text.length; i++)
        {
            text[i] = (byte)("the quick brown fox ".charAt(i % 20));
        }
        final BlockId compressible = store.put(MemorySegment.ofArray(text));
        assertTrue(object.get(compressible).byteSize() < text.length / 10, "LZ4 kept: it pays");
        final MemorySegment random = MemoryTierTest.block(10, 1 << 20);
        final BlockId incompressible = store.put(random);
        assertEquals((1 << 20) + 1, object.get(incompressible).byteSize(), "raw: LZ4 would not pay");
        try (TieredBlockStore.Pinned p = store.acquire(compressible))
        {
            assertEquals(-1, p.bytes().mismatch(MemorySegment.ofArray(text)));
        }
        // a truncated LZ4 stored form is a corrupt copy, never an exception from the decompressor
        final MemorySegment stored = object.get(compressible);
        assertEquals(null, new BlockCodec(true).decode(stored.asSlice(0, stored.byteSize() / 2)));
    }

    private void flipByteInObjectFile(final BlockId id, final long offset) throws IOException
    {
        final Path file;
        try (Stream<Path> files = Files.walk(dir.resolve("object")))
        {
            file = files.filter(p -> p.getFileName().toString().startsWith(id.hex())).findFirst().orElseThrow();
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE))
        {
            final ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, offset);
            b.put(0, (byte)(b.get(0) ^ 0x01));
            b.rewind();
            ch.write(b, offset);
        }
    }

    /** Delegates to a tier; tests override what they want to break. */
    static class ForwardingTier implements Tier
    {
        private final Tier delegate;

        ForwardingTier(final Tier delegate)
        {
            this.delegate = delegate;
        }

        @Override
        public String name()
        {
            return delegate.name();
        }

        @Override
        public MemorySegment get(final BlockId id) throws IOException
        {
            return delegate.get(id);
        }

        @Override
        public boolean put(final BlockId id, final MemorySegment bytes) throws IOException
        {
            return delegate.put(id, bytes);
        }

        @Override
        public boolean delete(final BlockId id) throws IOException
        {
            return delegate.delete(id);
        }

        @Override
        public boolean contains(final BlockId id) throws IOException
        {
            return delegate.contains(id);
        }

        @Override
        public Set<BlockId> ids() throws IOException
        {
            return delegate.ids();
        }

        @Override
        public long usedBytes()
        {
            return delegate.usedBytes();
        }

        @Override
        public void close()
        {
        }
    }
}
