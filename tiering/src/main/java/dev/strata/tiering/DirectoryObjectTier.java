package dev.strata.tiering;

import dev.strata.transport.BlockId;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The embedded default object tier: one file per block in a local (or mounted) directory, standing in for an
 * object store. A block lives at {@code root/<first 2 hex digits>/<sha256 hex>-<length>}.
 * <p>
 * <b>Durability.</b> A put writes a temporary file ({@code *.tmp}) in the block's shard directory, forces its
 * content and metadata to disk, renames it atomically over the final name and then forces the shard directory,
 * so once {@link #put} returns the block survives a crash or power loss, and a crash mid-write leaves at most a
 * temporary file: never a torn block under a block's name. Temporary files are ignored by {@link #ids()} and
 * deleted when the tier is opened. Deletes force the directory as well.
 * <p>
 * <b>Budget.</b> None: the object tier is the durable home of every block and never evicts. {@link #usedBytes()}
 * is computed by scanning the directory at open and then tracked by this instance's puts and deletes (files
 * changed behind its back are not accounted for).
 * <p>
 * The tier does not verify content: a file whose bytes were damaged on disk is returned as it is, and the
 * {@link TieredBlockStore} detects it. The directory is the source of truth for {@link #get},
 * {@link #contains} and {@link #ids()}. Thread-safe; the tier holds no open resources between calls.
 */
public final class DirectoryObjectTier implements Tier
{
    /** Suffix of in-flight writes; such files are never blocks. */
    public static final String TEMP_SUFFIX = ".tmp";

    private static final int SHARD_LOCKS = 256;

    private final Path root;
    private final Map<BlockId, Long> sizes = new ConcurrentHashMap<>();
    private final Object[] shardLocks = new Object[SHARD_LOCKS];
    private long usedBytes;

    /**
     * Opens (creating if needed) a directory tier, deletes temporary files left by an interrupted write and
     * counts the bytes held.
     *
     * @param root the directory holding the blocks.
     * @throws IOException if the directory cannot be created or scanned.
     */
    public DirectoryObjectTier(final Path root) throws IOException
    {
        this.root = root;
        for (int i = 0; i < SHARD_LOCKS; i++)
        {
            shardLocks[i] = new Object();
        }
        try
        {
            Files.createDirectories(root);
            long used = 0;
            try (DirectoryStream<Path> shards = Files.newDirectoryStream(root, Files::isDirectory))
            {
                for (final Path shard : shards)
                {
                    try (DirectoryStream<Path> files = Files.newDirectoryStream(shard))
                    {
                        for (final Path file : files)
                        {
                            final String name = file.getFileName().toString();
                            if (name.endsWith(TEMP_SUFFIX))
                            {
                                Files.deleteIfExists(file);
                                continue;
                            }
                            final BlockId id = parse(shard, name);
                            if (id != null && Files.isRegularFile(file))
                            {
                                final long size = Files.size(file);
                                sizes.put(id, size);
                                used += size;
                            }
                        }
                    }
                }
            }
            usedBytes = used;
        }
        catch (final IOException ex)
        {
            throw new IOException("cannot open object tier directory " + root + ": " + ex, ex);
        }
    }

    @Override
    public String name()
    {
        return "object";
    }

    /** The directory holding the blocks. */
    public Path root()
    {
        return root;
    }

    /** Where the block {@code id} is (or would be) stored. */
    public Path pathOf(final BlockId id)
    {
        final String hex = id.hex();
        return root.resolve(hex.substring(0, 2)).resolve(hex + "-" + id.length());
    }

    @Override
    public MemorySegment get(final BlockId id) throws IOException
    {
        try
        {
            return MemorySegment.ofArray(Files.readAllBytes(pathOf(id)));
        }
        catch (final NoSuchFileException ex)
        {
            return null;
        }
        catch (final IOException | OutOfMemoryError ex)
        {
            throw new IOException("object tier cannot read block " + id + " from " + pathOf(id) + ": " + ex, ex);
        }
    }

    @Override
    public boolean put(final BlockId id, final MemorySegment bytes) throws IOException
    {
        final Path target = pathOf(id);
        if (Files.isRegularFile(target))
        {
            return true;
        }
        final Path shard = target.getParent();
        if (!Files.isDirectory(shard))
        {
            Files.createDirectories(shard);
            forceDirectory(root);
        }
        final Path temp = shard.resolve(
            target.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + TEMP_SUFFIX);
        try
        {
            try (FileChannel ch = FileChannel.open(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
            {
                final long size = bytes.byteSize();
                final long slice = 1L << 30;
                for (long off = 0; off < size; off += slice)
                {
                    final ByteBuffer buf = bytes.asSlice(off, Math.min(slice, size - off)).asByteBuffer();
                    while (buf.hasRemaining())
                    {
                        ch.write(buf);
                    }
                }
                ch.force(true);
            }
            synchronized (lockOf(id))
            {
                Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
                forceDirectory(shard);
                final Long previous = sizes.put(id, bytes.byteSize());
                addUsed(bytes.byteSize() - (previous == null ? 0 : previous));
            }
            return true;
        }
        catch (final IOException ex)
        {
            try
            {
                Files.deleteIfExists(temp);
            }
            catch (final IOException suppressed)
            {
                ex.addSuppressed(suppressed);
            }
            throw new IOException("object tier cannot write block " + id + " to " + target + ": " + ex, ex);
        }
    }

    @Override
    public boolean delete(final BlockId id) throws IOException
    {
        final Path target = pathOf(id);
        synchronized (lockOf(id))
        {
            final boolean deleted;
            try
            {
                deleted = Files.deleteIfExists(target);
            }
            catch (final IOException ex)
            {
                throw new IOException("object tier cannot delete block " + id + " at " + target + ": " + ex, ex);
            }
            if (deleted)
            {
                forceDirectory(target.getParent());
            }
            final Long previous = sizes.remove(id);
            if (previous != null)
            {
                addUsed(-previous);
            }
            return deleted;
        }
    }

    @Override
    public boolean contains(final BlockId id)
    {
        return Files.isRegularFile(pathOf(id));
    }

    @Override
    public Set<BlockId> ids() throws IOException
    {
        final Set<BlockId> ids = new HashSet<>();
        try (DirectoryStream<Path> shards = Files.newDirectoryStream(root, Files::isDirectory))
        {
            for (final Path shard : shards)
            {
                try (DirectoryStream<Path> files = Files.newDirectoryStream(shard))
                {
                    for (final Path file : files)
                    {
                        final BlockId id = parse(shard, file.getFileName().toString());
                        if (id != null && Files.isRegularFile(file))
                        {
                            ids.add(id);
                        }
                    }
                }
                catch (final NoSuchFileException ignore)
                {
                    // shard removed concurrently
                }
            }
        }
        catch (final IOException ex)
        {
            throw new IOException("object tier cannot list " + root + ": " + ex, ex);
        }
        return ids;
    }

    @Override
    public synchronized long usedBytes()
    {
        return usedBytes;
    }

    /** Nothing to release: every call opens and closes its own files. */
    @Override
    public void close()
    {
    }

    @Override
    public String toString()
    {
        return "DirectoryObjectTier{" + root + "}";
    }

    private synchronized void addUsed(final long delta)
    {
        usedBytes += delta;
    }

    private Object lockOf(final BlockId id)
    {
        return shardLocks[id.hashCode() >>> 24];
    }

    /** The id a file name stands for, or null for temporary and foreign files. */
    private static BlockId parse(final Path shard, final String name)
    {
        if (name.endsWith(TEMP_SUFFIX) || !name.startsWith(shard.getFileName().toString()))
        {
            return null;
        }
        try
        {
            return BlockId.parse(name);
        }
        catch (final IllegalArgumentException ex)
        {
            return null;
        }
    }

    /**
     * Makes a directory's entries (a rename, a new file, a delete) durable. Platforms that cannot open a
     * directory as a channel (Windows) are skipped; a failing force on one that can is an error.
     */
    private static void forceDirectory(final Path dir) throws IOException
    {
        final FileChannel ch;
        try
        {
            ch = FileChannel.open(dir, StandardOpenOption.READ);
        }
        catch (final IOException | UnsupportedOperationException ex)
        {
            return;
        }
        try (ch)
        {
            ch.force(true);
        }
    }
}
