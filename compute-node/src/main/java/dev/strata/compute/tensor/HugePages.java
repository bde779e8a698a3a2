package dev.strata.compute.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;

/**
 * Large off-heap allocations (repacked and copied weights, the KV pool, streamed unit buffers) on 2 MiB pages where
 * Linux gives them: the region is aligned to 2 MiB and advised {@code MADV_HUGEPAGE} before its first touch, so with
 * transparent huge pages in {@code madvise} mode (the common default) its faults take huge pages. A decode step
 * streams every weight once: with 4 KiB pages that is a TLB miss every 4 KiB and a hardware prefetch that stops at
 * every page's end.
 * <p>
 * {@value #PROPERTY}{@code =false} turns it off (a plain 64-byte aligned allocation), to measure what it brings. Where
 * {@code madvise} is missing (not Linux) or refuses, the memory is the same, on small pages.
 */
public final class HugePages
{
    /** {@code -Dstrata.hugepages=false} allocates on small pages. */
    public static final String PROPERTY = "strata.hugepages";

    /** The size of a huge page (x86-64 and arm64 Linux with 4 KiB base pages). */
    public static final long SIZE = 2L << 20;

    private static final int MADV_HUGEPAGE = 14;
    private static final int PROT_READ_WRITE = 0x1 | 0x2;
    private static final int MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20;
    private static final MethodHandle MMAP;
    private static final MethodHandle MUNMAP;
    private static final MethodHandle MADVISE;

    static
    {
        MethodHandle mmap = null;
        MethodHandle munmap = null;
        MethodHandle madvise = null;
        if (System.getProperty("os.name", "").toLowerCase(Locale.ROOT).contains("linux"))
        {
            final Linker linker = Linker.nativeLinker();
            final SymbolLookup libc = linker.defaultLookup();
            final var f = libc.find("mmap");
            final var g = libc.find("munmap");
            final var h = libc.find("madvise");
            if (f.isPresent() && g.isPresent() && h.isPresent())
            {
                // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset), as a long
                mmap = linker.downcallHandle(f.get(), FunctionDescriptor.of(ValueLayout.JAVA_LONG,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
                munmap = linker.downcallHandle(g.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
                madvise = linker.downcallHandle(h.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
            }
        }
        MMAP = mmap;
        MUNMAP = munmap;
        MADVISE = madvise;
    }

    private HugePages()
    {
    }

    /** Whether allocations of {@code bytes} are advised onto huge pages (on, Linux, and at least one huge page). */
    public static boolean used(final long bytes)
    {
        return MMAP != null && bytes >= SIZE && Boolean.parseBoolean(System.getProperty(PROPERTY, "true"));
    }

    /**
     * {@code bytes} of zeroed memory that lives as long as {@code arena}, 64-byte aligned at least, and backed now
     * (touched, as {@link Arena#allocate} zeroes it), so that no page faults later on a hot path. From {@link #SIZE}
     * up it is its own anonymous mapping, aligned to a huge page and advised onto huge pages before the touch,
     * unmapped when the arena closes. Measured on a 2-vCPU guest: the first touch of 1 GiB took 3.8 s on small pages
     * and 1.1-2.4 s on huge pages.
     */
    public static MemorySegment allocate(final Arena arena, final long bytes)
    {
        final MemorySegment s = map(arena, bytes);
        if (s == null)
        {
            return arena.allocate(bytes, 64);
        }
        s.fill((byte)0);
        return s;
    }

    /** A huge-page advised mapping of {@code bytes}, not touched (its pages are backed as they are first written). */
    private static MemorySegment map(final Arena arena, final long bytes)
    {
        if (!used(bytes))
        {
            return null;
        }
        final long rounded = (bytes + SIZE - 1) & -SIZE;
        final long length = rounded + SIZE; // room to align the start
        final long base;
        try
        {
            base = (long)MMAP.invokeExact(0L, length, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0L);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("mmap", e);
        }
        if (base == -1L)
        {
            return null; // out of address space or refused: the arena's allocation says why, if it can
        }
        final long start = (base + SIZE - 1) & -SIZE;
        try
        {
            // refused (huge pages off, or not built in): the region stays on small pages, which is all it costs
            final int _ = (int)MADVISE.invokeExact(start, rounded, MADV_HUGEPAGE);
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("madvise", e);
        }
        return MemorySegment.ofAddress(start).reinterpret(bytes, arena, s -> unmap(base, length));
    }

    /**
     * A shared arena whose allocations are carved one after another from huge-page chunks (64 MiB, or a whole large
     * request), so that many tensors share huge pages instead of each rounding up to its own. The chunks are not
     * touched ahead (the caller writes what it allocates, as a repack does): only the last huge page a chunk's
     * allocations reach is partly unused, as pages nothing touches are never backed.
     * Closing it unmaps every chunk. With huge pages off it is a plain shared arena.
     */
    public static Arena arena()
    {
        final Arena owner = Arena.ofShared();
        return used(SIZE) ? new Slab(owner) : owner;
    }

    private static final class Slab implements Arena
    {
        private static final long CHUNK = 64L << 20;

        private final Arena owner;
        private MemorySegment chunk;
        private long used;

        Slab(final Arena owner)
        {
            this.owner = owner;
        }

        @Override
        public synchronized MemorySegment allocate(final long byteSize, final long byteAlignment)
        {
            if (byteSize < 0 || byteAlignment <= 0 || (byteAlignment & (byteAlignment - 1)) != 0 ||
                byteAlignment > SIZE)
            {
                return owner.allocate(byteSize, byteAlignment); // its checks and messages
            }
            long at = (used + byteAlignment - 1) & -byteAlignment;
            if (chunk == null || at + byteSize > chunk.byteSize())
            {
                // not touched: pages past the last allocation of a chunk are never backed
                final long size = Math.max(CHUNK, (byteSize + SIZE - 1) & -SIZE);
                final MemorySegment mapped = map(owner, size);
                chunk = mapped != null ? mapped : owner.allocate(size, SIZE);
                at = 0;
            }
            used = at + byteSize;
            return chunk.asSlice(at, byteSize);
        }

        @Override
        public MemorySegment.Scope scope()
        {
            return owner.scope();
        }

        @Override
        public void close()
        {
            owner.close();
        }
    }

    private static void unmap(final long base, final long length)
    {
        try
        {
            final int _ = (int)MUNMAP.invokeExact(base, length); // fails only for a range that was never mapped
        }
        catch (final Throwable e)
        {
            throw new IllegalStateException("munmap", e);
        }
    }
}
