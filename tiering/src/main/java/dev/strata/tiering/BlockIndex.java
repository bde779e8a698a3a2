package dev.strata.tiering;

import dev.strata.transport.BlockId;

import net.openhft.chronicle.map.ChronicleMap;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Set;

/**
 * A persistent, memory-mapped index of blocks on Chronicle Map: per block its length, which persistent tiers
 * hold it, and access statistics. The content checksum is the key itself (the SHA-256 of {@link BlockId}).
 * <p>
 * The index is a cache of facts the tiers own: after a crash it may lag behind them, so
 * {@link #reconcile} rebuilds the tier bits from what each tier actually lists at start-up.
 * <p>
 * <b>Crash safety.</b> Chronicle Map keeps its segment locks in the mapped file, so a process killed while it held
 * one leaves the file locked for every later process (each access then spins until Chronicle's 60 s dead-lock
 * timeout). The index is derived data, so {@link #open} does not try to repair such a file: a file that was not
 * closed cleanly (no {@code .clean} marker next to it, written by {@link #close} and removed by {@link #open}),
 * that is too small for the blocks the tiers hold, or that cannot be opened is deleted and created empty, and
 * {@link #reconcile} fills it from the tiers. Access statistics survive clean restarts only.
 * <p>
 * <b>Size.</b> The file is sized for twice the blocks the tiers hold at open (at least {@value #MIN_ENTRIES}
 * entries) and may grow to {@value #MAX_BLOAT}x that before the next start sizes it again; an update that does not
 * fit is dropped (the store keeps working, and the next start rebuilds a larger index).
 */
public final class BlockIndex implements AutoCloseable
{
    /** Tier bits. */
    public static final int SSD_BIT = 1, OBJECT_BIT = 2;
    static final long MIN_ENTRIES = 16_384;
    static final int MAX_BLOAT = 8;

    /**
     * One block's entry.
     *
     * @param length        content bytes.
     * @param tiers         bit set of {@link #SSD_BIT} and {@link #OBJECT_BIT}.
     * @param accesses      reads recorded.
     * @param lastAccessMillis wall-clock time of the last recorded read (0 if never read).
     */
    public record Entry(long length, int tiers, long accesses, long lastAccessMillis)
    {
    }

    private final ChronicleMap<byte[], long[]> map;
    private final Path file;
    private final long entries;
    private final String rebuiltBecause;

    private BlockIndex(final ChronicleMap<byte[], long[]> map, final Path file, final long entries,
        final String rebuiltBecause)
    {
        this.map = map;
        this.file = file;
        this.entries = entries;
        this.rebuiltBecause = rebuiltBecause;
    }

    /**
     * Opens the index file, or creates it empty when it is absent, was not closed cleanly, is too small or cannot be
     * opened (see the class comment). The caller must be the file's only user (the parameter service holds its data
     * directory's lock).
     *
     * @param expectedBlocks blocks the tiers hold now: the file is sized for twice as many.
     */
    public static BlockIndex open(final Path file, final long expectedBlocks) throws IOException
    {
        if (expectedBlocks < 0)
        {
            throw new IllegalArgumentException("invalid expectedBlocks=" + expectedBlocks);
        }
        final Path marker = marker(file);
        String reason = null;
        long entries = Math.max(MIN_ENTRIES, 2 * expectedBlocks);
        if (!Files.exists(file))
        {
            reason = "absent";
        }
        else if (!Files.exists(marker))
        {
            reason = "not closed cleanly (a crash may have left a segment locked)";
        }
        else
        {
            final long sized = readEntries(marker);
            if (sized < 2 * expectedBlocks || sized > 16 * Math.max(MIN_ENTRIES, 2 * expectedBlocks))
            {
                reason = "sized for " + sized + " entries, " + expectedBlocks + " blocks are stored";
            }
            else
            {
                entries = sized;
            }
        }
        Files.deleteIfExists(marker); // a crash from here on leaves no marker: the next open rebuilds
        if (reason == null)
        {
            try
            {
                return new BlockIndex(builder(entries).createPersistedTo(file.toFile()), file, entries, null);
            }
            catch (final IOException | RuntimeException ex)
            {
                reason = "cannot be opened: " + ex;
            }
        }
        Files.deleteIfExists(file);
        if (!reason.equals("absent"))
        {
            System.getLogger(BlockIndex.class.getName()).log(System.Logger.Level.INFO, "block index " + file + " " +
                reason + ": rebuilt from the tiers");
        }
        return new BlockIndex(builder(entries).createPersistedTo(file.toFile()), file, entries, reason);
    }

    private static net.openhft.chronicle.map.ChronicleMapBuilder<byte[], long[]> builder(final long entries)
    {
        return ChronicleMap.of(byte[].class, long[].class)
            .name("strata-block-index")
            .averageKey(new byte[BlockId.DIGEST_BYTES + 8])
            .averageValue(new long[4])
            .entries(entries)
            .maxBloatFactor(MAX_BLOAT);
    }

    private static Path marker(final Path file)
    {
        return file.resolveSibling(file.getFileName() + ".clean");
    }

    private static long readEntries(final Path marker)
    {
        try
        {
            return Long.parseLong(Files.readString(marker).strip());
        }
        catch (final IOException | NumberFormatException ex)
        {
            return -1;
        }
    }

    /** Why this open created the index empty (null when it reopened a cleanly closed one). */
    public String rebuiltBecause()
    {
        return rebuiltBecause;
    }

    public Entry get(final BlockId id)
    {
        final long[] v = map.get(id.keyBytes());
        return v == null ? null : new Entry(v[0], (int)v[1], v[2], v[3]);
    }

    /** Records that a tier holds a block. */
    public void stored(final BlockId id, final int tierBit)
    {
        map.compute(id.keyBytes(), (k, v) ->
        {
            final long[] n = v == null ? new long[]{id.length(), 0, 0, 0} : v.clone();
            n[1] |= tierBit;
            return n;
        });
    }

    /** Records that a tier no longer holds a block; a block held nowhere leaves the index. */
    public void removed(final BlockId id, final int tierBit)
    {
        map.computeIfPresent(id.keyBytes(), (k, v) ->
        {
            final long[] n = v.clone();
            n[1] &= ~tierBit;
            return n[1] == 0 ? null : n;
        });
    }

    /** Counts a read. */
    public void accessed(final BlockId id)
    {
        map.computeIfPresent(id.keyBytes(), (k, v) ->
        {
            final long[] n = v.clone();
            n[2]++;
            n[3] = System.currentTimeMillis();
            return n;
        });
    }

    public long size()
    {
        return map.longSize();
    }

    /**
     * Makes the index agree with the tiers: sets the bit of every block a tier lists, clears bits the tier
     * does not back, and drops blocks no tier holds.
     *
     * @param ssd    the SSD tier or {@code null}.
     * @param object the object tier.
     * @return how many entries changed.
     */
    public int reconcile(final Tier ssd, final Tier object) throws IOException
    {
        final Set<BlockId> inSsd = ssd == null ? Set.of() : ssd.ids();
        final Set<BlockId> inObject = object.ids();
        final Set<BlockId> all = new HashSet<>(inSsd);
        all.addAll(inObject);
        for (final byte[] key : new ArrayList<>(map.keySet()))
        {
            all.add(fromKey(key));
        }
        int changed = 0;
        for (final BlockId id : all)
        {
            final int want = (inSsd.contains(id) ? SSD_BIT : 0) | (inObject.contains(id) ? OBJECT_BIT : 0);
            final long[] v = map.get(id.keyBytes());
            final int have = v == null ? 0 : (int)v[1];
            if (want == have)
            {
                continue;
            }
            changed++;
            if (want == 0)
            {
                map.remove(id.keyBytes());
            }
            else
            {
                final long[] n = v == null ? new long[]{id.length(), 0, 0, 0} : v.clone();
                n[1] = want;
                map.put(id.keyBytes(), n);
            }
        }
        return changed;
    }

    private static BlockId fromKey(final byte[] key)
    {
        final byte[] digest = java.util.Arrays.copyOf(key, BlockId.DIGEST_BYTES);
        long length = 0;
        for (int i = 0; i < 8; i++)
        {
            length = (length << 8) | (key[BlockId.DIGEST_BYTES + i] & 0xFF);
        }
        return new BlockId(digest, length);
    }

    /** Closes the map, then marks the file as cleanly closed (so the next {@link #open} reuses it). */
    @Override
    public void close()
    {
        if (map.isOpen())
        {
            map.close();
            try
            {
                Files.writeString(marker(file), entries + "\n");
            }
            catch (final IOException ex)
            {
                // no marker: the next open rebuilds the index, which is only slower
            }
        }
    }
}
