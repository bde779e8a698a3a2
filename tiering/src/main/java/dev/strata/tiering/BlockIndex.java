package dev.strata.tiering;

import dev.strata.transport.BlockId;

import net.openhft.chronicle.map.ChronicleMap;

import java.io.IOException;
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
 */
public final class BlockIndex implements AutoCloseable
{
    /** Tier bits. */
    public static final int SSD_BIT = 1, OBJECT_BIT = 2;

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

    private BlockIndex(final ChronicleMap<byte[], long[]> map)
    {
        this.map = map;
    }

    /**
     * Opens (or creates) the index file.
     *
     * @param maxEntries blocks the index is sized for (Chronicle Map files do not grow without bound).
     */
    public static BlockIndex open(final Path file, final long maxEntries) throws IOException
    {
        if (maxEntries <= 0)
        {
            throw new IllegalArgumentException("invalid maxEntries=" + maxEntries);
        }
        final ChronicleMap<byte[], long[]> map = ChronicleMap.of(byte[].class, long[].class)
            .name("strata-block-index")
            .averageKey(new byte[BlockId.DIGEST_BYTES + 8])
            .averageValue(new long[4])
            .entries(maxEntries)
            .createPersistedTo(file.toFile());
        return new BlockIndex(map);
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

    @Override
    public void close()
    {
        map.close();
    }
}
