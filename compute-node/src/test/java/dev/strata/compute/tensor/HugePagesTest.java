package dev.strata.compute.tensor;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link HugePages} against what the kernel reports of this process ({@code /proc/self/smaps}): large allocations
 * are their own huge-page aligned mappings, zeroed, backed by huge pages once touched where transparent huge pages
 * are on, and unmapped with their arena; the arena carves many allocations from shared chunks.
 */
class HugePagesTest
{
    private static final Path THP = Path.of("/sys/kernel/mm/transparent_hugepage/enabled");

    @Test
    void shouldMapALargeAllocationOnItsOwnHugePagesAndUnmapItWithItsArena() throws IOException
    {
        assumeTrue(HugePages.used(HugePages.SIZE), "huge pages are for Linux only (os.name " +
            System.getProperty("os.name") + ")");
        final long bytes = 3 * HugePages.SIZE + 12_345;
        final long address;
        try (Arena arena = Arena.ofConfined())
        {
            final MemorySegment s = HugePages.allocate(arena, bytes);
            address = s.address();
            assertEquals(bytes, s.byteSize());
            assertTrue(mapping(address)[3] >= bytes, "backed at once (no faults later on a hot path): Rss " +
                mapping(address)[3]);
            assertEquals(0, address % HugePages.SIZE, "aligned to a huge page");
            assertEquals(-1, s.mismatch(MemorySegment.ofArray(new byte[(int)bytes])), "zeroed");
            s.fill((byte)7);
            assertEquals(7, s.get(ValueLayout.JAVA_BYTE, bytes - 1));
            final long[] mapping = mapping(address);
            assertTrue(mapping != null && mapping[0] <= address && mapping[1] >= address + bytes,
                "its own anonymous mapping");
            if (thpOn())
            {
                assertTrue(mapping[2] >= HugePages.SIZE, "transparent huge pages are on (" + Files.readString(THP)
                    .strip() + "), yet none backs the touched region: AnonHugePages " + mapping[2] + " bytes");
            }
        }
        assertEquals(null, mapping(address), "unmapped when the arena closed");
    }

    @Test
    void shouldCarveAnArenasAllocationsFromSharedChunksWithTheirAlignment()
    {
        assumeTrue(HugePages.used(HugePages.SIZE), "huge pages are for Linux only");
        final List<MemorySegment> parts = new ArrayList<>();
        final MemorySegment big;
        try (Arena arena = HugePages.arena())
        {
            // 3 MiB pieces at alignments up to 4 KiB: each where the previous ended, rounded up to its alignment
            long previousEnd = -1;
            for (int i = 0; i < 12; i++)
            {
                final long alignment = 1L << (i % 13);
                final MemorySegment p = arena.allocate((3L << 20) + i, alignment);
                assertEquals(0, p.address() % alignment);
                if (previousEnd >= 0)
                {
                    assertEquals((previousEnd + alignment - 1) & -alignment, p.address(), "piece " + i);
                }
                previousEnd = p.address() + p.byteSize();
                p.fill((byte)i);
                parts.add(p);
            }
            for (int i = 0; i < parts.size(); i++)
            {
                final byte b = (byte)i;
                final MemorySegment p = parts.get(i);
                assertEquals(b, p.get(ValueLayout.JAVA_BYTE, 0));
                assertEquals(b, p.get(ValueLayout.JAVA_BYTE, p.byteSize() - 1), "no piece overlaps the next");
            }
            // a piece larger than a chunk gets a chunk of its own; the next starts a new chunk after it
            big = arena.allocate(100L << 20, 64);
            assertEquals(0, big.address() % HugePages.SIZE);
            big.set(ValueLayout.JAVA_BYTE, big.byteSize() - 1, (byte)1);
            assertThrows(IllegalArgumentException.class, () -> arena.allocate(16, 3), "alignment not a power of 2");
        }
        assertFalse(big.scope().isAlive(), "closed with its arena");
        assertThrows(IllegalStateException.class, () -> parts.get(0).get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void shouldUseSmallPagesForSmallAllocationsAndWhenTurnedOff()
    {
        assertFalse(HugePages.used(HugePages.SIZE - 1), "less than a huge page");
        final String before = System.getProperty(HugePages.PROPERTY);
        System.setProperty(HugePages.PROPERTY, "false");
        try (Arena arena = HugePages.arena())
        {
            assertFalse(HugePages.used(HugePages.SIZE * 4));
            final MemorySegment s = arena.allocate(HugePages.SIZE * 4, 64);
            assertEquals(HugePages.SIZE * 4, s.byteSize());
            assertEquals(0, s.address() % 64);
        }
        finally
        {
            if (before == null)
            {
                System.clearProperty(HugePages.PROPERTY);
            }
            else
            {
                System.setProperty(HugePages.PROPERTY, before);
            }
        }
    }

    private static boolean thpOn() throws IOException
    {
        if (!Files.isReadable(THP))
        {
            return false;
        }
        final String mode = Files.readString(THP);
        return mode.contains("[always]") || mode.contains("[madvise]");
    }

    /** The mapping of this process holding {@code address}: start, end, AnonHugePages and Rss bytes; null if none. */
    private static long[] mapping(final long address) throws IOException
    {
        long[] found = null;
        for (final String line : Files.readAllLines(Path.of("/proc/self/smaps")))
        {
            final int dash = line.indexOf('-');
            final int space = line.indexOf(' ');
            if (dash > 0 && space > dash && line.substring(0, dash).matches("[0-9a-f]+"))
            {
                if (found != null)
                {
                    return found;
                }
                final long start = Long.parseUnsignedLong(line.substring(0, dash), 16);
                final long end = Long.parseUnsignedLong(line.substring(dash + 1, space), 16);
                if (address >= start && address < end)
                {
                    found = new long[]{start, end, 0, 0};
                }
            }
            else if (found != null && line.startsWith("AnonHugePages:"))
            {
                found[2] = Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
            else if (found != null && line.startsWith("Rss:"))
            {
                found[3] = Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        }
        return found;
    }
}
