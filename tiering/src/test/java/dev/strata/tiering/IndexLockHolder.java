package dev.strata.tiering;

import dev.strata.transport.BlockId;

import net.openhft.chronicle.map.ChronicleMap;
import net.openhft.chronicle.map.ExternalMapQueryContext;

import java.nio.file.Path;

/**
 * A child JVM for {@link BlockIndexCrashTest}: opens a block index file, records blocks, then takes the write lock of
 * one key's segment and waits to be killed with SIGKILL while holding it, as a process killed in the middle of an
 * index update does. Prints {@code LOCKED} once the lock is held.
 */
public final class IndexLockHolder
{
    private IndexLockHolder()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final Path file = Path.of(args[0]);
        final int blocks = Integer.parseInt(args[1]);
        final BlockIndex index = BlockIndex.open(file, blocks); // never closed: the process is killed
        for (int i = 0; i < blocks; i++)
        {
            index.stored(BlockIndexCrashTest.id(i), BlockIndex.OBJECT_BIT);
        }
        // the same file through Chronicle Map directly, to hold a segment lock as an interrupted update does
        try (ChronicleMap<byte[], long[]> map = ChronicleMap.of(byte[].class, long[].class)
            .name("strata-block-index").averageKey(new byte[BlockId.DIGEST_BYTES + 8]).averageValue(new long[4])
            .entries(BlockIndex.MIN_ENTRIES).maxBloatFactor(BlockIndex.MAX_BLOAT).createPersistedTo(file.toFile()))
        {
            final ExternalMapQueryContext<byte[], long[], ?> ctx = map.queryContext(BlockIndexCrashTest.id(0).keyBytes());
            ctx.writeLock().lock();
            System.out.println("LOCKED");
            System.out.flush();
            Thread.sleep(600_000);
        }
    }
}
