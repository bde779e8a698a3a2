package dev.strata.transport.bulk;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link SharedRegion}: what one mapping writes the other reads; lookup by address; names; cleanup. */
class SharedRegionTest
{
    @Test
    void shouldShareBytesBetweenTwoMappingsAndDeleteTheFileOnClose() throws Exception
    {
        Assumptions.assumeTrue(SharedRegion.roomFor(1 << 20), "no shared-memory directory with room on this host");
        final Path file;
        try (SharedRegion mine = SharedRegion.create(1 << 20))
        {
            file = SharedRegion.dir().resolve(mine.name());
            assertTrue(Files.isRegularFile(file));
            try (SharedRegion theirs = SharedRegion.open(mine.name()))
            {
                theirs.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 4096 + 3, 0x1122334455667788L);
                assertEquals(0x1122334455667788L, mine.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, 4096 + 3));
            }
            final MemorySegment slice = mine.segment().asSlice(1000, 5000);
            assertSame(mine, SharedRegion.containing(slice));
            assertEquals(1000, mine.offsetOf(slice));
            assertNull(SharedRegion.containing(mine.segment().asSlice((1 << 20) - 10).reinterpret(20)),
                "reaching past the end");
            try (Arena arena = Arena.ofConfined())
            {
                assertNull(SharedRegion.containing(arena.allocate(64)), "plain off-heap memory");
            }
            assertNull(SharedRegion.containing(MemorySegment.ofArray(new byte[8])));
        }
        assertFalse(Files.exists(file), "the creator deletes the file");
        assertThrows(IllegalArgumentException.class, () -> SharedRegion.open("../../etc/passwd"));
        assertThrows(IllegalArgumentException.class, () -> SharedRegion.open("strata-region-1-0123456789abcdef"),
            "no such region");
    }

    @Test
    void shouldSweepTheRegionsOfProcessesThatAreGone() throws Exception
    {
        Assumptions.assumeTrue(SharedRegion.roomFor(4096), "no shared-memory directory with room on this host");
        final Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        final Path stale = SharedRegion.dir().resolve("strata-region-" + gone.pid() + "-00000000000000aa");
        Files.write(stale, new byte[16]);
        try (SharedRegion live = SharedRegion.create(4096))
        {
            assertTrue(SharedRegion.sweepStale() >= 1 || !Files.exists(stale), "swept");
            assertFalse(Files.exists(stale), "the region of a process that is gone");
            assertTrue(Files.exists(SharedRegion.dir().resolve(live.name())), "a live process's region stays");
        }
    }

    @Test
    void shouldRefuseARegionLargerThanTheRoomLeft()
    {
        Assumptions.assumeTrue(SharedRegion.available(), "no shared-memory directory on this host");
        final java.io.IOException ex = assertThrows(java.io.IOException.class, () -> SharedRegion.create(1L << 50));
        assertTrue(ex.getMessage().contains("not enough room"), ex.getMessage());
    }
}
