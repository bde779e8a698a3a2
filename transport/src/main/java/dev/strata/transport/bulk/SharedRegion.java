package dev.strata.transport.bulk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.regex.Pattern;

/**
 * Memory in a shared-memory file that a peer on the same host maps too: the destination of a <em>direct
 * placement</em>, where a sender on this host copies bulk bytes straight into the receiver's memory instead of
 * through an Aeron log (one copy instead of two, and no log to clean). Only the checksums travel as messages.
 * <p>
 * The receiver creates a region ({@link #create}); the file lives while the region is open and is deleted when it
 * is closed. The sender opens it by name ({@link #open}), which accepts only names this class makes, of regular
 * files (not links) in the region directory. Open regions of this process are found by address
 * ({@link #containing}), so a client can tell whether a destination it was given can take direct placement.
 */
public final class SharedRegion implements AutoCloseable
{
    /** Where region files live: a tmpfs. */
    public static final String DIR_PROPERTY = "strata.region.dir";
    private static final Pattern NAME = Pattern.compile("strata-region-[0-9]{1,10}-[0-9a-f]{16}");
    private static final SecureRandom RANDOM = new SecureRandom();
    /** This process's regions by start address. */
    private static final ConcurrentSkipListMap<Long, SharedRegion> OPEN = new ConcurrentSkipListMap<>();
    private static final java.util.concurrent.atomic.AtomicBoolean SWEPT = new java.util.concurrent.atomic.AtomicBoolean();

    private final String name;
    private final Path file;
    private final Arena arena;
    private final MemorySegment segment;
    private final boolean owner;

    private SharedRegion(final String name, final Path file, final Arena arena, final MemorySegment segment,
        final boolean owner)
    {
        this.name = name;
        this.file = file;
        this.arena = arena;
        this.segment = segment;
        this.owner = owner;
    }

    static Path dir()
    {
        return Path.of(System.getProperty(DIR_PROPERTY, "/dev/shm"));
    }

    /** Whether this host has the region directory (Linux's /dev/shm, or the one the property names). */
    public static boolean available()
    {
        return Files.isDirectory(dir()) && Files.isWritable(dir());
    }

    /** Whether a region of {@code bytes} can be created now: the directory exists with that much room (and 64 MiB). */
    public static boolean roomFor(final long bytes)
    {
        try
        {
            return available() && Files.getFileStore(dir()).getUsableSpace() >= bytes + (64L << 20);
        }
        catch (final IOException ex)
        {
            return false;
        }
    }

    /**
     * Creates a region of {@code bytes} (zeroed), mapped read-write, registered for {@link #containing}. Refused
     * when the directory's file system has not that much room (64 MiB kept free), and its pages are written once
     * through the file before it is mapped: a tmpfs page that cannot be supplied to a mapping kills the process
     * (SIGBUS), while a write that cannot be stored throws. The first region of a process deletes regions whose processes are gone.
     */
    public static SharedRegion create(final long bytes) throws IOException
    {
        if (SWEPT.compareAndSet(false, true))
        {
            sweepStale();
        }
        final long room = Files.getFileStore(dir()).getUsableSpace();
        if (room < bytes + (64L << 20))
        {
            throw new IOException("not enough room in " + dir() + " for a shared region of " + bytes + " bytes (" +
                room + " usable, 64 MiB kept free)");
        }
        final byte[] random = new byte[8];
        RANDOM.nextBytes(random);
        final String name = "strata-region-" + ProcessHandle.current().pid() + "-" + HexFormat.of().formatHex(random);
        final Path file = dir().resolve(name);
        final Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
            StandardOpenOption.WRITE))
        {
            // the pages are taken now, by writes through the channel: a full tmpfs then fails here with an
            // IOException, where a first touch through the mapping would kill the process with SIGBUS
            final java.nio.ByteBuffer zeros = java.nio.ByteBuffer.allocateDirect(1 << 20);
            for (long at = 0; at < Math.max(1, bytes); )
            {
                zeros.clear().limit((int)Math.min(zeros.capacity(), Math.max(1, bytes) - at));
                at += ch.write(zeros, at);
            }
            final MemorySegment segment = ch.map(FileChannel.MapMode.READ_WRITE, 0, Math.max(1, bytes), arena)
                .asSlice(0, bytes);
            final SharedRegion region = new SharedRegion(name, file, arena, segment, true);
            OPEN.put(segment.address(), region);
            return region;
        }
        catch (final IOException | RuntimeException ex)
        {
            arena.close();
            Files.deleteIfExists(file);
            throw ex;
        }
    }

    /**
     * Maps a region another process created, read-write, for placing bytes into it.
     *
     * @throws IllegalArgumentException for a name this class does not make, or a file that is not a regular file.
     */
    public static SharedRegion open(final String name) throws IOException
    {
        if (!NAME.matcher(name).matches())
        {
            throw new IllegalArgumentException("not a region name: " + name);
        }
        final Path file = dir().resolve(name);
        if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS))
        {
            throw new IllegalArgumentException("no region " + name + " on this host");
        }
        final Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, LinkOption.NOFOLLOW_LINKS, StandardOpenOption.READ,
            StandardOpenOption.WRITE))
        {
            final long size = ch.size();
            final MemorySegment segment = size == 0 ? MemorySegment.NULL :
                ch.map(FileChannel.MapMode.READ_WRITE, 0, size, arena);
            return new SharedRegion(name, file, arena, segment, false);
        }
        catch (final IOException | RuntimeException ex)
        {
            arena.close();
            throw ex;
        }
    }

    /** Deletes region files left by processes that no longer run (a kill -9 leaves them: tmpfs is memory). */
    static int sweepStale()
    {
        int deleted = 0;
        try (var files = Files.list(dir()))
        {
            for (final Path f : (Iterable<Path>)files::iterator)
            {
                final String name = f.getFileName().toString();
                if (NAME.matcher(name).matches())
                {
                    final long pid = Long.parseLong(name.substring("strata-region-".length(), name.lastIndexOf('-')));
                    if (ProcessHandle.of(pid).isEmpty() && Files.deleteIfExists(f))
                    {
                        deleted++;
                    }
                }
            }
        }
        catch (final IOException | RuntimeException ignored)
        {
            // best effort: a file that cannot be listed or removed stays
        }
        return deleted;
    }

    /** The open region of this process whose memory holds all of {@code s}, or null. */
    public static SharedRegion containing(final MemorySegment s)
    {
        if (!s.isNative())
        {
            return null;
        }
        final Map.Entry<Long, SharedRegion> e = OPEN.floorEntry(s.address());
        if (e == null)
        {
            return null;
        }
        final SharedRegion r = e.getValue();
        return s.address() + s.byteSize() <= r.segment.address() + r.segment.byteSize() ? r : null;
    }

    public String name()
    {
        return name;
    }

    public MemorySegment segment()
    {
        return segment;
    }

    /** Whether the region's file still exists (its creator deletes it when it closes the region). */
    public boolean exists()
    {
        return Files.exists(file, LinkOption.NOFOLLOW_LINKS);
    }

    /** Offset of {@code s} in this region (it must lie within it). */
    public long offsetOf(final MemorySegment s)
    {
        return s.address() - segment.address();
    }

    /** Unmaps the region; its creator also deletes the file. Placements in flight into it must have ended. */
    @Override
    public void close()
    {
        if (owner)
        {
            OPEN.remove(segment.address());
        }
        arena.close();
        if (owner)
        {
            try
            {
                Files.deleteIfExists(file);
            }
            catch (final IOException ignored)
            {
                // a tmpfs file of a closed region: nothing else to do
            }
        }
    }
}
