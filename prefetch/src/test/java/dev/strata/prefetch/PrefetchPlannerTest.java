package dev.strata.prefetch;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PrefetchPlannerTest
{
    @Test
    void shouldLookFurtherAheadWhenLateAndLessFarWhenWasted()
    {
        final PrefetchPlanner p = new PrefetchPlanner(6, 0, 0, 3);
        assertArrayEquals(new int[]{3}, p.layersAfter(2));
        assertEquals(4, p.hintAfter(2), "the layer after the look-ahead");
        p.late();
        p.late();
        p.late(); // capped at 3
        assertArrayEquals(new int[]{3, 4, 5}, p.layersAfter(2));
        assertEquals(0, p.hintAfter(2), "wraps to the next token's first layer");
        p.wasted();
        assertArrayEquals(new int[]{3, 4}, p.layersAfter(2));
        p.wasted();
        p.wasted(); // never below 1
        assertEquals(1, p.lookahead());
    }

    @Test
    void shouldRankUnitsByTheNearestCaller()
    {
        final PrefetchPlanner p = new PrefetchPlanner(8, 0, 0, 1);
        p.onAcquire(1, 0, 1_000);
        assertEquals(6 * 2, p.distance(6, -1), "layer 6 is 6 layers after layer 0 (step 2 without experts)");
        assertEquals(2 * 2, p.distance(2, -1));
        p.onAcquire(2, 5, 2_000); // a second caller, at layer 5
        assertEquals(1 * 2, p.distance(6, -1), "needed by the second caller next");
        assertEquals(2 * 2, p.distance(2, -1), "still needed by the first caller soonest");
        p.onAcquire(2, 6, 3_000);
        assertEquals(6 * 2, p.distance(6, -1), "the second caller is on it; the first still needs it six layers on");
        final PrefetchPlanner alone = new PrefetchPlanner(8, 0, 0, 1);
        alone.onAcquire(1, 6, 1_000);
        assertEquals(8 * 2, alone.distance(6, -1), "the layer a lone caller is on is next needed a whole token on");
    }

    @Test
    void shouldMeasureTheTimePerLayerAndIgnoreIdleGaps()
    {
        final PrefetchPlanner p = new PrefetchPlanner(4, 0, 0, 1);
        p.onAcquire(1, 0, 1_000_000_000L);
        p.onAcquire(1, 1, 1_009_000_000L); // 9 ms after
        assertEquals(1_000_000L + (9_000_000L - 1_000_000L) / 8, p.layerNanos());
        final long before = p.layerNanos();
        p.onAcquire(1, 2, 5_000_000_000L); // an idle gap of seconds between requests
        assertEquals(before, p.layerNanos());
        assertEquals(2 * before, p.neededInNanos(0, 2));
    }

    @Test
    void shouldRankALayersExpertsByUseAndGuessTheNextLayersFromTheTrace()
    {
        final PrefetchPlanner p = new PrefetchPlanner(2, 4, 1, 1);
        p.onAcquire(1, 1, 1); // on layer 1: layer 0 comes next
        for (int t = 0; t < 5; t++)
        {
            p.onRouted(0, 3);
            p.onRouted(1, 2);
        }
        p.onRouted(0, 1);
        final long d3 = p.distance(0, 3);
        final long d1 = p.distance(0, 1);
        final long d0 = p.distance(0, 0);
        assertTrue(d3 < d1 && d1 < d0, "most used nearest: " + d3 + " " + d1 + " " + d0);
        assertTrue(p.distance(1, -1) > d0, "the next layer's core after this layer's experts");
        p.onRouted(0, 3);
        final int[] guesses = p.expertGuesses(0);
        assertEquals(2, guesses[0], "expert 2 of layer 1 has always followed expert 3 of layer 0");
        assertTrue(guesses.length <= 2, "at most one more than a token uses");
        assertEquals(12, p.expertTrace().trace().length, "every routing, in order");
    }

    @Test
    void shouldRefuseNonsense()
    {
        assertThrows(IllegalArgumentException.class, () -> new PrefetchPlanner(0, 0, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new PrefetchPlanner(2, 2, 3, 1));
        assertThrows(IllegalArgumentException.class,
            () -> new PrefetchPlanner(2, 0, 0, 1).train(new AccessTrace(2, new int[]{0, 1})));
    }
}
