package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.Named;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The {@link Tier} contract, run against every implementation, followed by the tier-specific behaviour of the
 * SSD and object tiers (budget, crash leftovers, no verification).
 */
class TierContractTest
{
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    /** A tier constructor that may fail with an I/O error. */
    @FunctionalInterface
    interface Opener
    {
        Tier open(Path dir) throws IOException;
    }

    /**
     * Every tier, named, with whether it is persistent (keeps its blocks across close and reopen on the same
     * directory).
     */
    static Stream<Arguments> tiers()
    {
        return Stream.of(
            Arguments.of(Named.of("object", factory(DirectoryObjectTier::new)), true),
            Arguments.of(Named.of("s3", factory(S3TestServer::openContractTier)), true),
            Arguments.of(Named.of("ssd", factory(d -> new RocksDbTier(d, 256L << 20))), true),
            Arguments.of(Named.of("memory", factory(d -> new MemoryTier(256L << 20, EvictionPolicy.lru()))), false));
    }

    static Function<Path, Tier> factory(final Opener opener)
    {
        return d ->
        {
            try
            {
                return opener.open(d);
            }
            catch (final IOException ex)
            {
                throw new UncheckedIOException(ex);
            }
        };
    }

    // ---------------------------------------------------------------------------------------------------------
    // contract
    // ---------------------------------------------------------------------------------------------------------

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldReturnIdenticalBytesAfterPut(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final long[] sizes = { 1, MIB, 4 * MIB + 3 };
            for (int i = 0; i < sizes.length; i++)
            {
                final MemorySegment content = block(i, sizes[i]);
                final BlockId id = BlockId.of(content);
                assertTrue(tier.put(id, content), "put of " + sizes[i] + " bytes");
                final MemorySegment read = tier.get(id);
                assertNotNull(read, "get of " + sizes[i] + " bytes");
                assertEquals(sizes[i], read.byteSize());
                assertEquals(-1, read.mismatch(content), "bytes of a block of " + sizes[i] + " bytes");
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldKeepItsOwnCopyOfPutBytes(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final byte[] array = block(7, 100_000).toArray(ValueLayout.JAVA_BYTE);
            final BlockId id = BlockId.of(array);
            assertTrue(tier.put(id, MemorySegment.ofArray(array)));
            final MemorySegment before = tier.get(id);
            array[0] ^= 1; // the caller reuses its buffer
            final MemorySegment after = tier.get(id);
            assertTrue(id.matches(after), "the tier's copy is not the caller's buffer");
            assertTrue(id.matches(before), "a segment returned earlier is still valid and unchanged");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldReturnNullForAbsentBlock(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final BlockId absent = BlockId.of(block(1, 1000));
            assertNull(tier.get(absent));
            assertFalse(tier.contains(absent));
            assertFalse(tier.delete(absent));
            assertEquals(Set.of(), tier.ids());
            assertEquals(0, tier.usedBytes());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldTreatRepeatedPutAsNoOp(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final MemorySegment content = block(2, 300_000);
            final BlockId id = BlockId.of(content);
            assertTrue(tier.put(id, content));
            assertTrue(tier.put(id, content));
            assertTrue(tier.put(id, MemorySegment.ofArray(content.toArray(ValueLayout.JAVA_BYTE))));
            assertEquals(300_000, tier.usedBytes(), "used bytes do not double");
            assertEquals(Set.of(id), tier.ids());
            assertTrue(id.matches(tier.get(id)));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldDeleteOnceAndThenMiss(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final MemorySegment content = block(3, 5000);
            final BlockId id = BlockId.of(content);
            tier.put(id, content);
            assertTrue(tier.delete(id));
            assertFalse(tier.delete(id));
            assertNull(tier.get(id));
            assertFalse(tier.contains(id));
            assertTrue(tier.put(id, content), "a deleted block can be stored again");
            assertTrue(id.matches(tier.get(id)));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldContainOnlyWhatWasPut(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final MemorySegment a = block(4, 1000);
            final MemorySegment b = block(5, 1000);
            tier.put(BlockId.of(a), a);
            assertTrue(tier.contains(BlockId.of(a)));
            assertFalse(tier.contains(BlockId.of(b)));
            assertFalse(tier.contains(new BlockId(BlockId.of(a).sha256(), 999)), "same digest, other length");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldListExactlyThePutIds(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final Set<BlockId> expected = new HashSet<>();
            for (int i = 0; i < 12; i++)
            {
                final MemorySegment content = block(100 + i, 1 + i * 7919);
                final BlockId id = BlockId.of(content);
                tier.put(id, content);
                expected.add(id);
            }
            assertEquals(expected, tier.ids());
            final BlockId removed = expected.iterator().next();
            tier.delete(removed);
            expected.remove(removed);
            assertEquals(expected, tier.ids());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldTrackUsedBytesOnPutsAndDeletes(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        try (Tier tier = factory.apply(dir))
        {
            final MemorySegment a = block(6, 1000);
            final MemorySegment b = block(7, MIB + 1);
            tier.put(BlockId.of(a), a);
            assertEquals(1000, tier.usedBytes());
            tier.put(BlockId.of(b), b);
            assertEquals(1000 + MIB + 1, tier.usedBytes());
            tier.delete(BlockId.of(a));
            assertEquals(MIB + 1, tier.usedBytes());
            tier.delete(BlockId.of(a));
            assertEquals(MIB + 1, tier.usedBytes(), "a delete of an absent block changes nothing");
            tier.delete(BlockId.of(b));
            assertEquals(0, tier.usedBytes());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldReadBackConcurrentPutsFromFourThreads(final Function<Path, Tier> factory, final boolean persistent)
        throws Exception
    {
        final int threads = 4;
        final List<MemorySegment> blocks = new ArrayList<>();
        final Random sizes = new Random(42);
        long total = 0;
        for (int i = 0; i < 50; i++)
        {
            final MemorySegment content = block(1000 + i, 1 + sizes.nextInt(256 << 10));
            blocks.add(content);
            total += content.byteSize();
        }
        final ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (Tier tier = factory.apply(dir))
        {
            final CountDownLatch start = new CountDownLatch(1);
            final List<Future<Integer>> results = new ArrayList<>();
            for (int t = 0; t < threads; t++)
            {
                final long seed = t;
                results.add(pool.submit(() ->
                {
                    // every thread puts every block (racing puts of one id) and reads it back, in its own order
                    final List<MemorySegment> order = new ArrayList<>(blocks);
                    Collections.shuffle(order, new Random(seed));
                    start.await();
                    int verified = 0;
                    for (final MemorySegment content : order)
                    {
                        final BlockId id = BlockId.of(content);
                        assertTrue(tier.put(id, content));
                        final MemorySegment read = tier.get(id);
                        assertNotNull(read, "block " + id + " read back");
                        assertEquals(-1, read.mismatch(content), "bytes of block " + id);
                        verified++;
                    }
                    return verified;
                }));
            }
            start.countDown();
            for (final Future<Integer> f : results)
            {
                assertEquals(50, f.get(60, TimeUnit.SECONDS));
            }
            assertEquals(50, tier.ids().size());
            assertEquals(total, tier.usedBytes(), "each block counted once");
            for (final MemorySegment content : blocks)
            {
                assertEquals(-1, tier.get(BlockId.of(content)).mismatch(content));
            }
        }
        finally
        {
            pool.shutdownNow();
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("tiers")
    void shouldKeepEveryBlockAcrossCloseAndReopen(final Function<Path, Tier> factory, final boolean persistent)
        throws IOException
    {
        assumeTrue(persistent, "only persistent tiers keep blocks across a reopen");
        final List<MemorySegment> blocks = new ArrayList<>();
        long total = 0;
        try (Tier tier = factory.apply(dir))
        {
            for (int i = 0; i < 6; i++)
            {
                final MemorySegment content = block(200 + i, i == 0 ? 1 : (i * MIB) / 2 + i);
                blocks.add(content);
                total += content.byteSize();
                assertTrue(tier.put(BlockId.of(content), content));
            }
            tier.delete(BlockId.of(blocks.remove(5)));
            total -= 5 * MIB / 2 + 5;
        }
        try (Tier tier = factory.apply(dir))
        {
            final Set<BlockId> expected = new HashSet<>();
            for (final MemorySegment content : blocks)
            {
                final BlockId id = BlockId.of(content);
                expected.add(id);
                assertTrue(tier.contains(id));
                final MemorySegment read = tier.get(id);
                assertNotNull(read, "block " + id + " after reopen");
                assertEquals(-1, read.mismatch(content), "bytes of block " + id + " after reopen");
            }
            assertEquals(expected, tier.ids(), "the deleted block stays deleted");
            assertEquals(total, tier.usedBytes(), "used bytes recounted at open");
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // SSD tier: budget
    // ---------------------------------------------------------------------------------------------------------

    @Test
    void ssdShouldStayWithinBudgetAndKeepRecentlyReadBlocks() throws IOException
    {
        final long budget = 10 * MIB;
        final List<BlockId> ids = new ArrayList<>();
        try (RocksDbTier tier = new RocksDbTier(dir, budget))
        {
            for (int i = 0; i < 20; i++)
            {
                final MemorySegment content = block(300 + i, MIB);
                final BlockId id = BlockId.of(content);
                ids.add(id);
                assertTrue(tier.put(id, content), "block " + i + " fits after eviction");
                assertTrue(tier.usedBytes() <= budget, "used " + tier.usedBytes() + " after block " + i);
                // blocks 0 and 1 are hot: read after every put
                assertNotNull(tier.get(ids.get(0)));
                if (i >= 1)
                {
                    assertNotNull(tier.get(ids.get(1)));
                }
            }
            final Set<BlockId> expected = new HashSet<>(ids.subList(0, 2));
            expected.addAll(ids.subList(12, 20));
            assertEquals(expected, tier.ids(), "the 2 hot blocks and the 8 newest survive");
            assertEquals(budget, tier.usedBytes());
            assertEquals(10, tier.evictions());
            for (final BlockId evicted : ids.subList(2, 12))
            {
                assertNull(tier.get(evicted));
            }
        }
        try (RocksDbTier tier = new RocksDbTier(dir, budget))
        {
            assertEquals(budget, tier.usedBytes(), "evictions are durable");
            assertEquals(10, tier.ids().size());
        }
    }

    @Test
    void ssdShouldRefuseBlockLargerThanBudget() throws IOException
    {
        try (RocksDbTier tier = new RocksDbTier(dir, MIB))
        {
            final MemorySegment small = block(1, 1000);
            tier.put(BlockId.of(small), small);
            final MemorySegment big = block(2, MIB + 1);
            assertFalse(tier.put(BlockId.of(big), big));
            assertFalse(tier.contains(BlockId.of(big)));
            assertTrue(tier.contains(BlockId.of(small)), "nothing evicted for a refused block");
            assertEquals(1000, tier.usedBytes());
            assertEquals(0, tier.evictions());
        }
    }

    @Test
    void ssdShouldKeepLargeValuesInBlobFiles() throws IOException
    {
        final MemorySegment content = block(9, 2 * MIB);
        try (RocksDbTier tier = new RocksDbTier(dir, 64 * MIB))
        {
            tier.put(BlockId.of(content), content);
        }
        // the reopen replays the WAL and flushes the memtable: a 2 MiB value lands in a blob file, not an SST
        try (RocksDbTier tier = new RocksDbTier(dir, 64 * MIB); Stream<Path> files = Files.list(dir))
        {
            assertTrue(files.anyMatch(p -> p.getFileName().toString().endsWith(".blob")), "integrated BlobDB is on");
            assertTrue(BlockId.of(content).matches(tier.get(BlockId.of(content))));
        }
    }

    @Test
    void ssdShouldEvictDownToALoweredBudgetAtOpen() throws IOException
    {
        try (RocksDbTier tier = new RocksDbTier(dir, 8 * MIB))
        {
            for (int i = 0; i < 8; i++)
            {
                final MemorySegment content = block(400 + i, MIB);
                tier.put(BlockId.of(content), content);
            }
        }
        try (RocksDbTier tier = new RocksDbTier(dir, 3 * MIB))
        {
            assertEquals(3 * MIB, tier.usedBytes());
            assertEquals(3, tier.ids().size());
            for (final BlockId id : tier.ids())
            {
                assertTrue(id.matches(tier.get(id)));
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // object tier: crash leftovers, no verification
    // ---------------------------------------------------------------------------------------------------------

    @Test
    void objectShouldIgnoreLeftoverTempFileAndCleanItAtReopen() throws IOException
    {
        final MemorySegment kept = block(1, 4096);
        final MemorySegment crashed = block(2, 8192);
        final Path leftover;
        try (DirectoryObjectTier tier = new DirectoryObjectTier(dir))
        {
            tier.put(BlockId.of(kept), kept);
            // a write of another block interrupted by a crash: half of it in a temp file next to its final name
            final Path target = tier.pathOf(BlockId.of(crashed));
            Files.createDirectories(target.getParent());
            leftover = target.resolveSibling(target.getFileName() + ".5eed" + DirectoryObjectTier.TEMP_SUFFIX);
            Files.write(leftover, crashed.asSlice(0, 4096).toArray(ValueLayout.JAVA_BYTE));
            assertEquals(Set.of(BlockId.of(kept)), tier.ids());
            assertFalse(tier.contains(BlockId.of(crashed)));
            assertNull(tier.get(BlockId.of(crashed)));
        }
        try (DirectoryObjectTier tier = new DirectoryObjectTier(dir))
        {
            assertFalse(Files.exists(leftover), "temp file deleted at open");
            assertEquals(Set.of(BlockId.of(kept)), tier.ids());
            assertEquals(4096, tier.usedBytes(), "the temp file is not counted");
            assertTrue(tier.put(BlockId.of(crashed), crashed), "the interrupted block can be written again");
            assertTrue(BlockId.of(crashed).matches(tier.get(BlockId.of(crashed))));
        }
    }

    @Test
    void objectShouldReturnCorruptBytesAsStored() throws IOException
    {
        try (DirectoryObjectTier tier = new DirectoryObjectTier(dir))
        {
            final MemorySegment content = block(3, 10_000);
            final BlockId id = BlockId.of(content);
            tier.put(id, content);
            final long offset = 1234;
            try (FileChannel ch = FileChannel.open(tier.pathOf(id), StandardOpenOption.READ, StandardOpenOption.WRITE))
            {
                final ByteBuffer b = ByteBuffer.allocate(1);
                ch.read(b, offset);
                b.put(0, (byte)(b.get(0) ^ 0x40)).rewind();
                ch.write(b, offset);
            }
            final MemorySegment read = tier.get(id);
            assertNotNull(read, "a corrupt copy is still returned");
            assertEquals(offset, read.mismatch(content), "the flipped byte, unverified");
            assertNotEquals(content.get(ValueLayout.JAVA_BYTE, offset), read.get(ValueLayout.JAVA_BYTE, offset));
            assertFalse(id.matches(read));
        }
    }

    // ---------------------------------------------------------------------------------------------------------

    /** {@code size} random bytes, the same for the same seed. */
    static MemorySegment block(final long seed, final long size)
    {
        final byte[] bytes = new byte[Math.toIntExact(size)];
        new Random(seed).nextBytes(bytes);
        return MemorySegment.ofArray(bytes);
    }
}
