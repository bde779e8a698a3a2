package dev.strata.prefetch;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PredictorTest
{
    @Test
    void shouldPredictTheCyclicLayerOrderAndRankDistances()
    {
        final CyclicOrderPredictor p = new CyclicOrderPredictor(5);
        assertArrayEquals(new int[]{4, 0, 1}, p.predict(3, 3));
        assertArrayEquals(new int[]{1, 2, 3, 4}, p.predict(0, 10), "never the current unit again");
        assertEquals(1, p.distance(3, 4));
        assertEquals(2, p.distance(3, 0));
        assertEquals(5, p.distance(3, 3), "the unit just used is needed again last");
    }

    @Test
    void shouldLearnRoutingFromATraceAndPredictLikelySuccessors()
    {
        // a synthetic router: layer l (units 4l..4l+3 are its 4 experts) mostly picks expert (l + token) % 4,
        // sometimes (1 in 5) a random one; the predictor sees only the trace
        final Random random = new Random(1);
        final TransitionPredictor p = new TransitionPredictor(16);
        final int[] trace = new int[4000];
        int n = 0;
        for (int token = 0; n < trace.length; token++)
        {
            final int bias = token % 2;
            for (int l = 0; l < 4 && n < trace.length; l++)
            {
                final int e = random.nextInt(5) == 0 ? random.nextInt(4) : (l + bias) % 4;
                trace[n++] = 4 * l + e;
            }
        }
        p.train(java.util.Arrays.copyOf(trace, 3000));
        // score on the held-out part: how often is the true next unit among the top 2 predicted?
        int right = 0;
        int total = 0;
        for (int i = 3000; i < trace.length - 1; i++)
        {
            final int[] guess = p.predict(trace[i], 2);
            for (final int g : guess)
            {
                if (g == trace[i + 1])
                {
                    right++;
                    break;
                }
            }
            total++;
            p.observe(trace[i]);
        }
        // a uniform guess of 2 among 16 units is right 1 in 8; the learned predictor must do far better
        assertTrue(right > 0.6 * total, "top-2 accuracy " + right + "/" + total);
        assertTrue(p.probability(0, 5) > p.probability(0, 6), "expert 1 of layer 1 follows expert 0 of layer 0 most");
        assertTrue(p.distance(0, 5) < p.distance(0, 3), "a likely successor is nearer than an unlikely one");
    }

    @Test
    void shouldTrainFromARecordedTraceFileAsFromTheAccessesThemselves(@TempDir final Path dir) throws Exception
    {
        final Random random = new Random(2);
        final int[] accesses = new int[500];
        for (int i = 0; i < accesses.length; i++)
        {
            accesses[i] = 3 * (i % 4) + (random.nextInt(3) == 0 ? random.nextInt(3) : i % 3);
        }
        final Path file = dir.resolve("experts.trace");
        new AccessTrace(12, accesses).write(file);
        final AccessTrace back = AccessTrace.read(file);
        assertEquals(12, back.units());
        assertArrayEquals(accesses, back.trace());

        final TransitionPredictor online = new TransitionPredictor(12);
        for (final int unit : accesses)
        {
            online.observe(unit);
        }
        final TransitionPredictor offline = new TransitionPredictor(12);
        offline.train(back);
        for (int unit = 0; unit < 12; unit++)
        {
            assertArrayEquals(online.predict(unit, 4), offline.predict(unit, 4), "successors of unit " + unit);
        }
        assertThrows(IllegalArgumentException.class, () -> new TransitionPredictor(16).train(back),
            "a trace over another number of units");
    }

    @Test
    void shouldRejectMalformedTraceFilesNamingTheProblem(@TempDir final Path dir) throws Exception
    {
        final String[][] cases = {
            {"", "not an access trace"},
            {"something else\n1 2 3\n", "not an access trace"},
            {"strata-trace 1 units=x\n", "bad unit count"},
            {"strata-trace 1 units=4\n1 2\n3 four\n", "line 3: 'four' is not a unit index"},
            {"strata-trace 1 units=4\n1 2 4\n", "line 2: unit 4 is outside 0..3"},
            {"strata-trace 1 units=4\n-1\n", "unit -1 is outside 0..3"}};
        for (final String[] c : cases)
        {
            final Path file = dir.resolve("bad.trace");
            Files.writeString(file, c[0]);
            final IOException ex = assertThrows(IOException.class, () -> AccessTrace.read(file), c[0]);
            assertTrue(ex.getMessage().contains(c[1]) && ex.getMessage().contains(file.toString()), ex.getMessage());
        }
        assertEquals(0, AccessTrace.read(Files.writeString(dir.resolve("empty.trace"), "strata-trace 1 units=4\n"))
            .trace().length, "a trace with a header and no accesses is empty, not an error");
    }

    @Test
    void shouldReportAccuracyCoverageTimelinessAndStalls()
    {
        final PrefetchStats s = new PrefetchStats();
        for (int i = 0; i < 5; i++)
        {
            s.prefetchIssued();
        }
        s.hit(true);            // prefetched, arrived in time
        s.late(2_000_000);      // prefetched, still in flight: waited 2 ms
        s.wasted(100);          // prefetched, evicted unused
        s.demand(4_000_000);    // nobody prefetched it: waited 4 ms
        s.hit(false);           // already resident
        s.cancelled(false);     // a queued guess dropped before it was sent
        s.cancelled(true);      // a guess in flight, cancelled at the service
        s.token();
        s.token();
        final PrefetchStats.Report r = s.report();
        assertEquals(2.0 / 5, r.accuracy(), 1e-9, "used / (used + evicted unused + cancelled)");
        assertEquals(2.0 / 3, r.coverage(), 1e-9);
        assertEquals(0.5, r.timeliness(), 1e-9);
        assertEquals(100, r.wastedBytes());
        assertEquals(3.0, r.stallMillisPerToken(), 1e-9);
        assertEquals(4, r.accesses(), "an eviction is not an access");
        assertEquals(2, r.cancelled());
        assertEquals(1, r.cancelledInFlight());
    }
}
