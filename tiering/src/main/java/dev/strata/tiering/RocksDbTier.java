package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.rocksdb.CompressionType;
import org.rocksdb.Options;
import org.rocksdb.ReadOptions;
import org.rocksdb.RocksDB;
import org.rocksdb.RocksDBException;
import org.rocksdb.RocksIterator;
import org.rocksdb.WriteBatch;
import org.rocksdb.WriteOptions;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The SSD tier: blocks in an embedded RocksDB, keyed by {@link BlockId#keyBytes()}. No RocksDB type crosses
 * this class's API.
 * <p>
 * <b>Storage.</b> Values are multi-MiB, so integrated BlobDB is on: values of 64 KiB and more go to blob files
 * (uncompressed, since blocks are often LZ4-compressed or quantized already) and the LSM tree holds only keys
 * and blob references, so compactions do not rewrite block bytes; blob garbage collection reclaims the space
 * of evicted blocks.
 * <p>
 * <b>Durability.</b> The write-ahead log is on and every put and delete is written with {@code sync}: once
 * {@link #put} returns the block survives a crash. A put is one atomic write batch (the block plus the
 * evictions that make room for it), so a failed put changes nothing and never leaves a torn value.
 * <p>
 * <b>Budget.</b> At most {@code budgetBytes} of block content (the sum of value sizes) is held; disk usage is
 * higher by RocksDB's space amplification (not yet collected blob garbage, WAL, metadata). When a put does not
 * fit, least-recently-used blocks ({@link #get} and {@link #put} count as uses) are deleted until it does; a
 * block larger than the whole budget is refused. The LRU order lives in memory and is rebuilt at open by
 * iterating the database (which reads every value once), in key order; if the database holds more than the
 * budget at open (the budget was lowered), blocks are evicted in that order until it fits.
 * <p>
 * <b>A cache.</b> The tier only ever holds copies of blocks the object tier keeps, so damage must not stop a
 * service: the LRU is rebuilt at open without checksum verification (a damaged blob does not fail the open); reads
 * skip RocksDB's checksums too, since the store hashes every copy it reads from this tier against its id (a damaged
 * value fails that hash), and a value RocksDB itself finds damaged is reported as a {@link CorruptCopyException};
 * either way the store drops the copy and reads the object tier. {@link #openOrReplace} moves a database that cannot
 * be opened at all aside and starts empty.
 * <p>
 * Thread-safe: reads run concurrently; puts and deletes are serialized with each other; bookkeeping is under
 * a short lock. {@link #close()} waits for calls in flight, and calls after it fail with an
 * {@link IOException}.
 */
public final class RocksDbTier implements Tier
{
    private static final long MIN_BLOB_BYTES = 64L << 10;
    private static final long BLOB_FILE_BYTES = 64L << 20;

    static
    {
        RocksDB.loadLibrary();
    }

    private final Path dir;
    /** Changed at run time by {@link #budgetBytes(long)}; read under {@code lru}'s lock. */
    private volatile long budgetBytes;
    private final Options options;
    private final WriteOptions syncWrite;
    private final ReadOptions read;
    private final RocksDB db;

    /** id → value size, in access order (eldest = least recently used). Guarded by itself. */
    private final LinkedHashMap<BlockId, Long> lru = new LinkedHashMap<>(1024, 0.75f, true);
    private long usedBytes;
    private long evictions;

    /** Serializes mutations so that eviction and bookkeeping always agree with the database. */
    private final ReentrantLock mutation = new ReentrantLock();
    /** Shared by every call using the database, exclusive for close (no use of a freed native handle). */
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private boolean closed;

    /**
     * Opens (creating if needed) the SSD tier in {@code dir}.
     *
     * @param dir         the RocksDB directory.
     * @param budgetBytes most bytes of block content held.
     * @throws IOException if the database cannot be opened or scanned.
     */
    public RocksDbTier(final Path dir, final long budgetBytes) throws IOException
    {
        if (budgetBytes <= 0)
        {
            throw new IllegalArgumentException("invalid ssd budget=" + budgetBytes + " bytes");
        }
        this.dir = dir;
        this.budgetBytes = budgetBytes;
        Files.createDirectories(dir);

        options = new Options()
            .setCreateIfMissing(true)
            .setEnableBlobFiles(true)
            .setMinBlobSize(MIN_BLOB_BYTES)
            .setBlobFileSize(BLOB_FILE_BYTES)
            .setBlobCompressionType(CompressionType.NO_COMPRESSION)
            .setEnableBlobGarbageCollection(true)
            .setKeepLogFileNum(4);
        syncWrite = new WriteOptions().setSync(true);
        // no RocksDB checksum on reads: the store hashes every SSD copy against its SHA-256 id anyway, and the blob
        // CRC cost about 0.8 CPU-s per GB here (1.0 against 0.2 CPU-s/GB per get without it; a 4 MiB warm get went
        // from 0.6-0.9 to 1.8-4 GB/s); a damaged copy still fails the store's hash (or RocksDB's own structure checks)
        read = new ReadOptions().setVerifyChecksums(false);
        RocksDB opened = null;
        try
        {
            opened = RocksDB.open(options, dir.toString());
            db = opened;
            rebuild();
        }
        catch (final RocksDBException ex)
        {
            release(opened);
            throw failure("cannot open the ssd tier in " + dir, ex);
        }
        catch (final RuntimeException | Error ex)
        {
            release(opened);
            throw ex;
        }
    }

    /**
     * Opens the tier in {@code dir}; when the database there cannot be opened (a damaged file, a half-written
     * MANIFEST, anything but a lock held by another process), moves it aside to {@code dir.damaged-<millis>}, logs a
     * warning and opens an empty tier instead: the SSD tier is a cache of the object tier.
     */
    public static RocksDbTier openOrReplace(final Path dir, final long budgetBytes) throws IOException
    {
        try
        {
            return new RocksDbTier(dir, budgetBytes);
        }
        catch (final IOException ex)
        {
            if (String.valueOf(ex.getMessage()).contains("lock hold") ||
                String.valueOf(ex.getMessage()).contains("While lock file"))
            {
                throw ex; // another process has it open: not damage
            }
            final Path aside = dir.resolveSibling(dir.getFileName() + ".damaged-" + System.currentTimeMillis());
            Files.move(dir, aside);
            System.getLogger(RocksDbTier.class.getName()).log(System.Logger.Level.WARNING,
                "the ssd tier in " + dir + " cannot be opened (" + ex.getMessage() + "); moved it aside to " + aside +
                    " and started an empty ssd tier (blocks are read from the object tier)");
            return new RocksDbTier(dir, budgetBytes);
        }
    }

    @Override
    public String name()
    {
        return "ssd";
    }

    public long budgetBytes()
    {
        return budgetBytes;
    }

    /**
     * Changes the budget at run time (the dashboard's knob). A larger one takes effect at once; a smaller one at the
     * next write, which evicts least recently used blocks until it and what is held fit.
     */
    public void budgetBytes(final long bytes)
    {
        if (bytes <= 0)
        {
            throw new IllegalArgumentException("invalid ssd budget=" + bytes + " bytes");
        }
        synchronized (lru)
        {
            budgetBytes = bytes;
        }
    }

    /** Blocks evicted to make room so far. */
    public long evictions()
    {
        synchronized (lru)
        {
            return evictions;
        }
    }

    @Override
    public MemorySegment get(final BlockId id) throws IOException
    {
        enter();
        try
        {
            synchronized (lru)
            {
                if (lru.get(id) == null) // marks it recently used
                {
                    return null;
                }
            }
            final byte[] value = db.get(read, id.keyBytes());
            return value == null ? null : MemorySegment.ofArray(value);
        }
        catch (final RocksDBException ex)
        {
            if (ex.getStatus() != null && ex.getStatus().getCode() == org.rocksdb.Status.Code.Corruption)
            {
                final IOException io = failure("ssd tier copy of block " + id + " is damaged", ex);
                throw new CorruptCopyException(id, io.getMessage(), ex);
            }
            throw failure("ssd tier cannot read block " + id, ex);
        }
        finally
        {
            exit();
        }
    }

    @Override
    public boolean put(final BlockId id, final MemorySegment bytes) throws IOException
    {
        final long size = bytes.byteSize();
        enter();
        mutation.lock();
        try
        {
            final List<BlockId> victims = new ArrayList<>();
            synchronized (lru)
            {
                if (lru.get(id) != null)
                {
                    return true;
                }
                if (size > budgetBytes)
                {
                    return false;
                }
                if (size > Integer.MAX_VALUE - 8)
                {
                    throw new IOException(
                        "block " + id + " of " + size + " bytes is too large for the ssd tier (max 2 GiB)");
                }
                long used = usedBytes;
                final Iterator<Map.Entry<BlockId, Long>> eldest = lru.entrySet().iterator();
                while (used + size > budgetBytes)
                {
                    final Map.Entry<BlockId, Long> e = eldest.next();
                    victims.add(e.getKey());
                    used -= e.getValue();
                }
            }
            try (WriteBatch batch = new WriteBatch())
            {
                for (final BlockId victim : victims)
                {
                    batch.delete(victim.keyBytes());
                }
                addValue(batch, id.keyBytes(), bytes);
                db.write(syncWrite, batch);
            }
            synchronized (lru)
            {
                for (final BlockId victim : victims)
                {
                    final Long victimSize = lru.remove(victim);
                    if (victimSize != null)
                    {
                        usedBytes -= victimSize;
                        evictions++;
                    }
                }
                lru.put(id, size);
                usedBytes += size;
            }
            return true;
        }
        catch (final RocksDBException ex)
        {
            throw failure("ssd tier cannot write block " + id + " (" + size + " bytes)", ex);
        }
        finally
        {
            mutation.unlock();
            exit();
        }
    }

    @Override
    public boolean delete(final BlockId id) throws IOException
    {
        enter();
        mutation.lock();
        try
        {
            synchronized (lru)
            {
                if (!lru.containsKey(id))
                {
                    return false;
                }
            }
            db.delete(syncWrite, id.keyBytes());
            synchronized (lru)
            {
                usedBytes -= lru.remove(id);
            }
            return true;
        }
        catch (final RocksDBException ex)
        {
            throw failure("ssd tier cannot delete block " + id, ex);
        }
        finally
        {
            mutation.unlock();
            exit();
        }
    }

    @Override
    public boolean contains(final BlockId id)
    {
        synchronized (lru)
        {
            return lru.containsKey(id);
        }
    }

    @Override
    public Set<BlockId> ids()
    {
        synchronized (lru)
        {
            return new HashSet<>(lru.keySet());
        }
    }

    @Override
    public long usedBytes()
    {
        synchronized (lru)
        {
            return usedBytes;
        }
    }

    /** Writes the memtable out to SST and blob files (tests that damage those files). */
    void flush() throws IOException
    {
        enter();
        try (org.rocksdb.FlushOptions f = new org.rocksdb.FlushOptions().setWaitForFlush(true))
        {
            db.flush(f);
        }
        catch (final RocksDBException ex)
        {
            throw failure("ssd tier cannot flush", ex);
        }
        finally
        {
            exit();
        }
    }

    /** Closes the database, then its options. Idempotent. */
    @Override
    public void close() throws IOException
    {
        lifecycle.writeLock().lock();
        try
        {
            if (closed)
            {
                return;
            }
            closed = true;
            try
            {
                db.closeE();
            }
            catch (final RocksDBException ex)
            {
                throw failure("ssd tier in " + dir + " did not close cleanly", ex);
            }
            finally
            {
                read.close();
                syncWrite.close();
                options.close();
                synchronized (lru)
                {
                    lru.clear();
                    usedBytes = 0;
                }
            }
        }
        finally
        {
            lifecycle.writeLock().unlock();
        }
    }

    /** Releases native handles after a failed open. */
    private void release(final RocksDB opened)
    {
        if (opened != null)
        {
            opened.close();
        }
        read.close();
        syncWrite.close();
        options.close();
    }

    @Override
    public String toString()
    {
        return "RocksDbTier{" + dir + ", budget=" + budgetBytes + "}";
    }

    /**
     * Rebuilds the LRU from the database and evicts down to the budget. Checksums are not verified by this scan,
     * which only needs each value's size: a damaged blob is found (and dropped) when it is read.
     */
    private void rebuild() throws RocksDBException
    {
        final byte[] scratch = new byte[0];
        // no checksum verification: this scan uses sizes only, and a damaged blob must not fail the open
        try (ReadOptions scan = new ReadOptions().setFillCache(false).setVerifyChecksums(false); RocksIterator it = db.newIterator(scan))
        {
            for (it.seekToFirst(); it.isValid(); it.next())
            {
                final BlockId id = idOf(it.key());
                if (id != null)
                {
                    final long size = it.value(scratch);
                    lru.put(id, size);
                    usedBytes += size;
                }
            }
            it.status();
        }
        if (usedBytes > budgetBytes)
        {
            try (WriteBatch batch = new WriteBatch())
            {
                final List<BlockId> victims = new ArrayList<>();
                long used = usedBytes;
                for (final Map.Entry<BlockId, Long> e : lru.entrySet())
                {
                    if (used <= budgetBytes)
                    {
                        break;
                    }
                    victims.add(e.getKey());
                    batch.delete(e.getKey().keyBytes());
                    used -= e.getValue();
                }
                db.write(syncWrite, batch);
                for (final BlockId victim : victims)
                {
                    usedBytes -= lru.remove(victim);
                    evictions++;
                }
            }
        }
    }

    /** The id a key stands for, or null for a key this tier did not write. */
    private static BlockId idOf(final byte[] key)
    {
        if (key.length != BlockId.DIGEST_BYTES + 8)
        {
            return null;
        }
        long length = 0;
        for (int i = BlockId.DIGEST_BYTES; i < key.length; i++)
        {
            length = length << 8 | (key[i] & 0xFF);
        }
        if (length <= 0)
        {
            return null;
        }
        final byte[] sha = new byte[BlockId.DIGEST_BYTES];
        System.arraycopy(key, 0, sha, 0, sha.length);
        return new BlockId(sha, length);
    }

    /** Adds a value to a batch without a heap copy when the segment is native or wraps a whole array. */
    private static void addValue(final WriteBatch batch, final byte[] key, final MemorySegment bytes)
        throws RocksDBException
    {
        if (bytes.isNative())
        {
            final ByteBuffer k = ByteBuffer.allocateDirect(key.length).put(key).flip();
            batch.put(k, bytes.asByteBuffer());
            return;
        }
        if (bytes.heapBase().orElse(null) instanceof byte[] array && bytes.address() == 0 &&
            array.length == bytes.byteSize())
        {
            batch.put(key, array);
            return;
        }
        batch.put(key, bytes.toArray(ValueLayout.JAVA_BYTE));
    }

    private void enter() throws IOException
    {
        lifecycle.readLock().lock();
        if (closed)
        {
            lifecycle.readLock().unlock();
            throw new IOException("ssd tier in " + dir + " is closed");
        }
    }

    private void exit()
    {
        lifecycle.readLock().unlock();
    }

    private static IOException failure(final String what, final RocksDBException ex)
    {
        final String detail = ex.getMessage() != null ? ex.getMessage() : String.valueOf(ex.getStatus());
        return new IOException(what + ": RocksDB error: " + detail, ex);
    }
}
