package dev.strata.prefetch;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The what-if replay on small traces whose outcome was worked out by hand (in the comments). */
class TraceReplayTest
{
    @TempDir
    Path dir;

    /** Four layers of 100 bytes, no globals, two passes; budget, look-ahead and prefetch as given. */
    private static LayerTrace twoPasses(final long budget, final int lookahead, final boolean prefetch)
    {
        final int[] layers = {0, 1, 2, 3, 0, 1, 2, 3};
        final long[] at = new long[layers.length];
        for (int i = 0; i < at.length; i++)
        {
            at[i] = i * 1_000_000L;
        }
        final byte[] outcome = new byte[layers.length];
        java.util.Arrays.fill(outcome, LayerTrace.HIT);
        return new LayerTrace(new LayerTrace.Settings(0, new long[]{100, 100, 100, 100}, budget, lookahead, 4,
            prefetch, 1_000_000_000L), at, layers, outcome, new long[layers.length]);
    }

    /**
     * Budget of three layers, look-ahead 1: layer 0 is a demand fetch, every later layer was prefetched while the one
     * before ran (1, 2, then 3 evicting 1, then 1 evicting 3, then 3 evicting 1): 1 miss, 7 hits, 5 prefetches.
     */
    @Test
    void shouldPrefetchTheNextLayerIntoAThreeLayerBudget()
    {
        final LayerTrace t = twoPasses(300, 1, true);
        final TraceReplay.Result r = TraceReplay.replay(t, t.settings());
        assertEquals(8, r.accesses());
        assertEquals(1, r.misses());
        assertEquals(7, r.hits());
        assertEquals(5, r.prefetches());
        assertEquals(0, r.wasted());
        assertEquals(600, r.bytesMoved(), "1 demand fetch and 5 prefetches of 100 bytes");
    }

    /**
     * Without prefetch: 0, 1, 2 are demand fetches; 3 evicts 2 (the farthest from 3); 0 and 1 hit; 2 evicts 1; 3 hits:
     * 5 misses, 3 hits.
     */
    @Test
    void shouldEvictTheLayerNeededFarthestAheadOnDemand()
    {
        final LayerTrace t = twoPasses(300, 1, false);
        final TraceReplay.Result r = TraceReplay.replay(t, t.settings());
        assertEquals(5, r.misses());
        assertEquals(3, r.hits());
        assertEquals(0, r.prefetches());
    }

    /** The whole model fits: only the first pass fetches, by prefetch after the first layer. */
    @Test
    void shouldFetchEachLayerOnceWhenTheModelFits()
    {
        final LayerTrace t = twoPasses(400, 1, true);
        final TraceReplay.Result r = TraceReplay.replay(t, t.settings());
        assertEquals(1, r.misses());
        assertEquals(3, r.prefetches());
        assertEquals(400, r.bytesMoved());
    }

    @Test
    void shouldRefuseABudgetBelowTheLargestLayer()
    {
        final LayerTrace t = twoPasses(300, 1, true);
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
            () -> TraceReplay.replay(t, t.settings().with(99, 1, true, 1_000_000_000L)));
        assertTrue(ex.getMessage().contains("at least 100"), ex.getMessage());
    }

    @Test
    void shouldReadWhatItWrote() throws IOException
    {
        final LayerTrace t = twoPasses(300, 2, true);
        final Path f = dir.resolve("t.trace");
        t.write(f);
        final LayerTrace back = LayerTrace.read(f);
        assertArrayEquals(t.layer(), back.layer());
        assertArrayEquals(t.atNanos(), back.atNanos());
        assertArrayEquals(t.outcome(), back.outcome());
        assertEquals(2, back.settings().lookahead());
        assertEquals(300, back.settings().budgetBytes());
        final TraceReplay.Result a = TraceReplay.replay(t, t.settings());
        final TraceReplay.Result b = TraceReplay.replay(back, back.settings());
        assertEquals(a.hits(), b.hits());
        assertEquals(a.misses(), b.misses());
        assertEquals(a.bytesMoved(), b.bytesMoved());
    }

    @Test
    void shouldNameTheLineOfAMalformedTrace() throws IOException
    {
        final Path f = dir.resolve("bad.trace");
        Files.writeString(f, "strata-access-trace 1\nsettings layers=2 globals=0 layer=10,10 budget=100 lookahead=1 " +
            "prefetch=true link=1000\n0 0 h 0\n5 7 h 0\n");
        final IOException ex = assertThrows(IOException.class, () -> LayerTrace.read(f));
        assertTrue(ex.getMessage().contains("line 4") && ex.getMessage().contains("layer 7"), ex.getMessage());
    }

    /** The recorded figures: hits are h and l, misses d; stall per token over the accesses of the last layer. */
    @Test
    void shouldCountTheRecordedOutcomes()
    {
        final LayerTrace t = new LayerTrace(new LayerTrace.Settings(0, new long[]{10, 10}, 100, 1, 4, true, 1000),
            new long[]{0, 1, 2, 3}, new int[]{0, 1, 0, 1},
            new byte[]{LayerTrace.DEMAND, LayerTrace.LATE, LayerTrace.HIT, LayerTrace.HIT}, new long[]{2_000_000, 1_000_000, 0, 0});
        final TraceReplay.Result r = TraceReplay.recorded(t);
        assertEquals(3, r.hits());
        assertEquals(1, r.misses());
        assertEquals(1, r.late());
        assertEquals(1.5, r.stallMillisPerToken(), 1e-9);
    }
}
