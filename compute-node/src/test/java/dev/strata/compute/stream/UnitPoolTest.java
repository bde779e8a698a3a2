package dev.strata.compute.stream;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UnitPoolTest
{
    @Test
    void shouldReuseAnEvictedBufferOfTheSameSizeWithoutGrowing()
    {
        try (UnitPool pool = new UnitPool(1000))
        {
            final MemorySegment a = pool.take(256);
            final MemorySegment b = pool.take(256);
            assertEquals(512, pool.usedBytes());
            pool.recycle(a);
            assertEquals(512, pool.usedBytes(), "a pooled buffer still counts");
            assertTrue(pool.hasFree(256));
            assertFalse(pool.hasFree(128));
            assertSame(a, pool.take(256), "the pooled buffer is handed out again");
            assertEquals(512, pool.usedBytes());
            assertEquals(512, pool.peakBytes());
            assertEquals(64 * 4, b.byteSize());
        }
    }

    @Test
    void shouldGiveBuffersBackToTheSystemToMakeRoom()
    {
        try (UnitPool pool = new UnitPool(640))
        {
            final MemorySegment a = pool.take(320);
            pool.take(320);
            assertFalse(pool.fits(64));
            pool.recycle(a);
            assertFalse(pool.fits(64), "pooled: still held");
            assertTrue(pool.releaseOnePooled());
            assertFalse(pool.releaseOnePooled(), "nothing else is pooled");
            assertEquals(320, pool.usedBytes());
            assertTrue(pool.fits(320));
            assertEquals(640, pool.peakBytes());
        }
    }

    @Test
    void shouldRefuseAnEmptyBudget()
    {
        assertEquals("invalid budgetBytes=0", assertThrows(IllegalArgumentException.class, () -> new UnitPool(0))
            .getMessage());
    }
}
