package dev.strata.tiering;

import dev.strata.transport.BlockId;

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
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The SSD tier is a cache of the object tier: a flipped bit in one of its files, or a database RocksDB cannot open
 * at all, never stops the store from opening and serving every block from the object tier.
 */
class DamagedSsdTierTest
{
    @TempDir
    Path dir;

    /** Flips one byte in the middle of every file of {@code dir} whose name ends with {@code suffix}. */
    static int flipByteInFiles(final Path dir, final String suffix) throws IOException
    {
        final List<Path> files;
        try (Stream<Path> s = Files.list(dir))
        {
            files = s.filter(p -> p.getFileName().toString().endsWith(suffix) && p.toFile().length() > 0).toList();
        }
        for (final Path f : files)
        {
            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, StandardOpenOption.WRITE))
            {
                final long at = ch.size() / 2;
                final ByteBuffer b = ByteBuffer.allocate(1);
                ch.read(b, at);
                b.flip();
                final byte flipped = (byte)(b.get(0) ^ 0x10);
                ch.write(ByteBuffer.wrap(new byte[]{flipped}), at);
                ch.force(true);
            }
        }
        return files.size();
    }

    private List<BlockId> storeAndPromote(final Path ssdDir, final List<MemorySegment> blocks) throws IOException
    {
        final List<BlockId> ids = new ArrayList<>();
        try (MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
            RocksDbTier ssd = new RocksDbTier(ssdDir, 64L << 20);
            DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("objects"));
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context().memory(memory).ssd(ssd)
                .object(object)))
        {
            for (final MemorySegment b : blocks)
            {
                final BlockId id = store.put(b);
                ids.add(id);
                try (TieredBlockStore.Pinned p = store.acquire(id)) // promotes object -> ssd
                {
                    assertEquals(-1, p.bytes().mismatch(b));
                }
            }
            assertEquals(blocks.size(), ssd.ids().size());
            ssd.flush();
        }
        return ids;
    }

    private static List<MemorySegment> blocks()
    {
        final List<MemorySegment> blocks = new ArrayList<>();
        for (int i = 0; i < 3; i++)
        {
            blocks.add(MemoryTierTest.block(700 + i, 512 << 10)); // random: stored raw, in blob files
        }
        return blocks;
    }

    @Test
    void shouldOpenAndServeFromObjectTierWhenAnSsdBlobFileIsDamaged() throws IOException
    {
        final Path ssdDir = dir.resolve("ssd");
        final List<MemorySegment> blocks = blocks();
        final List<BlockId> ids = storeAndPromote(ssdDir, blocks);
        assertTrue(flipByteInFiles(ssdDir, ".blob") > 0, "the blocks live in blob files");

        try (MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
            RocksDbTier ssd = RocksDbTier.openOrReplace(ssdDir, 64L << 20);
            DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("objects"));
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context().memory(memory).ssd(ssd)
                .object(object)))
        {
            for (int i = 0; i < ids.size(); i++)
            {
                try (TieredBlockStore.Pinned p = store.acquire(ids.get(i)))
                {
                    assertEquals(-1, p.bytes().mismatch(blocks.get(i)), "good bytes, from a good copy");
                }
            }
            assertTrue(store.stats().corrupt()[TieredBlockStore.SSD] >= 1, "the damaged copy was detected");
            assertEquals(ids.size(), store.stats().hits()[TieredBlockStore.SSD] +
                store.stats().hits()[TieredBlockStore.OBJECT], "each block from the ssd tier or the object tier");
            for (final BlockId id : ids)
            {
                assertTrue(store.scrub(id), "every block has a good copy");
            }
        }
    }

    @Test
    void shouldMoveAsideAnSsdTierThatCannotBeOpenedAndStartEmpty() throws IOException
    {
        final Path ssdDir = dir.resolve("ssd");
        final List<MemorySegment> blocks = blocks();
        final List<BlockId> ids = storeAndPromote(ssdDir, blocks);
        try (Stream<Path> s = Files.list(ssdDir))
        {
            for (final Path p : s.filter(p -> p.getFileName().toString().startsWith("MANIFEST")).toList())
            {
                Files.write(p, new byte[]{1, 2, 3}); // a MANIFEST RocksDB cannot read
            }
        }

        try (MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
            RocksDbTier ssd = RocksDbTier.openOrReplace(ssdDir, 64L << 20);
            DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("objects"));
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context().memory(memory).ssd(ssd)
                .object(object)))
        {
            assertTrue(ssd.ids().isEmpty(), "a fresh ssd tier");
            try (Stream<Path> s = Files.list(dir))
            {
                assertTrue(s.anyMatch(p -> p.getFileName().toString().startsWith("ssd.damaged-")),
                    "the damaged database is kept aside");
            }
            for (int i = 0; i < ids.size(); i++)
            {
                try (TieredBlockStore.Pinned p = store.acquire(ids.get(i)))
                {
                    assertEquals(-1, p.bytes().mismatch(blocks.get(i)));
                }
            }
            assertFalse(ssd.ids().isEmpty(), "blocks are promoted into the new ssd tier");
        }
    }
}
