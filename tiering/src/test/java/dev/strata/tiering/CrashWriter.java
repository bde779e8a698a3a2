package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;

/**
 * The child process of {@link CrashSafetyTest}: opens a tier on a data directory and writes deterministic
 * pseudo-random blocks forever, acknowledging each one only after its put returned, until it is killed.
 * <p>
 * Usage: {@code CrashWriter <directory|rocksdb|store> <dataDir> <ackFile> [seed]}. For {@code store} the
 * tiers are a {@link MemoryTier}, a {@link RocksDbTier} in {@code dataDir/ssd} and a
 * {@link DirectoryObjectTier} in {@code dataDir/object} (every other block is also acquired after its put, so
 * that the store promotes it into the SSD tier and the kill can land in an SSD write too). After each
 * acknowledged put the block's id and a newline are appended to {@code ackFile} and forced to disk; after the
 * first one {@code READY} is printed on stdout.
 */
public final class CrashWriter
{
    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;
    static final long MIN_BLOCK = KIB;
    static final long MAX_BLOCK = 3 * MIB;
    /** Large enough that the {@code rocksdb} kind never evicts an acknowledged block. */
    static final long ROCKSDB_BUDGET = 4L << 30;
    /** Small, so that the store's SSD tier evicts (a batch of deletes plus a put) while being killed. */
    static final long STORE_SSD_BUDGET = 24 * MIB;
    static final long STORE_MEMORY_BUDGET = 16 * MIB;
    static final long STORE_MAX_BLOCK = 4 * MIB;

    private CrashWriter()
    {
    }

    /** One put, whatever the tier kind. */
    @FunctionalInterface
    private interface Writer
    {
        void write(long index, BlockId id, MemorySegment bytes) throws IOException;
    }

    public static void main(final String[] args) throws Exception
    {
        if (args.length < 3)
        {
            System.err.println("usage: CrashWriter <directory|rocksdb|store> <dataDir> <ackFile> [seed]");
            System.exit(64);
        }
        final String kind = args[0];
        final Path data = Path.of(args[1]);
        final Path ackFile = Path.of(args[2]);
        final long seed = args.length > 3 ? Long.parseLong(args[3]) : 0;

        final AutoCloseable[] open;
        final Writer writer;
        switch (kind)
        {
            case "directory" ->
            {
                final DirectoryObjectTier tier = new DirectoryObjectTier(data);
                log("opened " + tier + " holding " + tier.ids().size() + " blocks");
                open = new AutoCloseable[]{tier};
                writer = (index, id, bytes) -> require(tier.put(id, bytes), id);
            }
            case "rocksdb" ->
            {
                final RocksDbTier tier = new RocksDbTier(data, ROCKSDB_BUDGET);
                log("opened " + tier + " holding " + tier.ids().size() + " blocks");
                open = new AutoCloseable[]{tier};
                writer = (index, id, bytes) -> require(tier.put(id, bytes), id);
            }
            case "store" ->
            {
                final MemoryTier memory = new MemoryTier(STORE_MEMORY_BUDGET, EvictionPolicy.lru());
                final RocksDbTier ssd = new RocksDbTier(data.resolve("ssd"), STORE_SSD_BUDGET);
                final DirectoryObjectTier object = new DirectoryObjectTier(data.resolve("object"));
                final TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                    .memory(memory).ssd(ssd).object(object).maxBlockBytes(STORE_MAX_BLOCK).prefetchThreads(1));
                log("opened store: ssd holds " + ssd.ids().size() + ", object holds " + object.ids().size() +
                    " blocks");
                open = new AutoCloseable[]{store, memory, ssd, object};
                writer = (index, id, bytes) ->
                {
                    final BlockId stored = store.put(bytes);
                    if (!stored.equals(id))
                    {
                        throw new IllegalStateException("store returned id " + stored + " for block " + id);
                    }
                };
            }
            default -> throw new IllegalArgumentException("unknown tier kind '" + kind + "'");
        }

        // Only reached through SIGKILL in the test; closing keeps a manual run tidy.
        Runtime.getRuntime().addShutdownHook(new Thread(() ->
        {
            for (final AutoCloseable c : open)
            {
                try
                {
                    c.close();
                }
                catch (final Exception ignored)
                {
                    // best effort
                }
            }
        }));

        final TieredBlockStore store = open[0] instanceof TieredBlockStore s ? s : null;
        try (FileChannel ack = FileChannel.open(ackFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.APPEND))
        {
            for (long index = 0; ; index++)
            {
                final byte[] content = block(seed, index);
                final BlockId id = BlockId.of(content);
                try (Arena arena = Arena.ofConfined())
                {
                    final MemorySegment bytes;
                    if ((index & 1) == 0)
                    {
                        bytes = MemorySegment.ofArray(content);
                    }
                    else
                    {
                        // odd blocks off-heap: exercises the tiers' native-segment paths
                        bytes = arena.allocate(content.length);
                        MemorySegment.copy(content, 0, bytes, ValueLayout.JAVA_BYTE, 0, content.length);
                    }
                    writer.write(index, id, bytes);
                }
                // the put returned: only now is the block acknowledged
                final ByteBuffer line = ByteBuffer.wrap((id + "\n").getBytes(StandardCharsets.US_ASCII));
                while (line.hasRemaining())
                {
                    ack.write(line);
                }
                ack.force(true);
                if (index == 0)
                {
                    System.out.println("READY");
                    System.out.flush();
                }
                if (store != null && (index & 1) == 1)
                {
                    // promote into memory and SSD (object -> SSD write), so kills also land in SSD puts
                    try (TieredBlockStore.Pinned pinned = store.acquire(id))
                    {
                        if (!id.matches(pinned.bytes()))
                        {
                            throw new IllegalStateException("store handed out a block not matching " + id);
                        }
                    }
                }
            }
        }
    }

    /**
     * The content of block {@code index}: pseudo-random bytes seeded by {@code (seed, index)}, of a size drawn
     * log-uniformly from 1 KiB to 3 MiB, with every 8th block sized around the SSD tier's 64 KiB blob
     * threshold. Every third block is made compressible (alternate 64-byte runs zeroed), so that the store
     * keeps both the raw and the LZ4 {@link BlockCodec} stored forms.
     */
    static byte[] block(final long seed, final long index)
    {
        final SplittableRandom random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + index);
        final int size;
        if (index % 8 == 7)
        {
            size = (int)(64 * KIB - 1 + (index / 8) % 3); // 64 KiB - 1, 64 KiB, 64 KiB + 1
        }
        else
        {
            final double lo = Math.log(MIN_BLOCK), hi = Math.log(MAX_BLOCK);
            size = (int)Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, Math.round(Math.exp(lo + random.nextDouble() *
                (hi - lo)))));
        }
        final byte[] content = new byte[size];
        random.nextBytes(content);
        if (index % 3 == 2)
        {
            for (int off = 0; off < size; off += 128)
            {
                java.util.Arrays.fill(content, off, Math.min(size, off + 64), (byte)0);
            }
        }
        return content;
    }

    private static void require(final boolean stored, final BlockId id)
    {
        if (!stored)
        {
            throw new IllegalStateException("tier refused block " + id);
        }
    }

    private static void log(final String message)
    {
        System.out.println("CrashWriter: " + message);
        System.out.flush();
    }
}
