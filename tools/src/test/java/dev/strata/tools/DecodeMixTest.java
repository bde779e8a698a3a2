package dev.strata.tools;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntToDoubleFunction;

import org.junit.jupiter.api.Test;

/**
 * {@link DecodeMix} against a simulated batching server, whose step time is a known function of its batch: the gaps
 * it groups must be that function, and the spread it attributes to the mix must be all of the spread when nothing else
 * varies, and none of it when requests of one batch size ran at different speeds.
 */
class DecodeMixTest
{
    /**
     * Steps one after another; request i's first token comes at the start of step {@code start[i]} (from elsewhere,
     * as from a prefill node), then it decodes one token a step for {@code tokens[i] - 1} steps, each as long as
     * {@code step} says for the requests decoding in it.
     */
    private static List<double[]> simulate(final int[] start, final int[] tokens, final IntToDoubleFunction step,
        final double[] slow)
    {
        final int n = start.length;
        final List<List<Double>> arrivals = new ArrayList<>();
        for (int i = 0; i < n; i++)
        {
            arrivals.add(new ArrayList<>());
        }
        double t = 1.0;
        for (int s = 0; s < 200; s++)
        {
            int decoding = 0;
            double factor = 1;
            for (int i = 0; i < n; i++)
            {
                if (s == start[i])
                {
                    arrivals.get(i).add(t);
                }
                if (s >= start[i] && s < start[i] + tokens[i] - 1)
                {
                    decoding++;
                    factor = Math.max(factor, slow[i]);
                }
            }
            t += decoding == 0 ? 0.5 : step.applyAsDouble(decoding) * factor;
            for (int i = 0; i < n; i++)
            {
                if (s >= start[i] && s < start[i] + tokens[i] - 1)
                {
                    arrivals.get(i).add(t);
                }
            }
        }
        return arrivals.stream().map(a -> a.stream().mapToDouble(Double::doubleValue).toArray()).toList();
    }

    @Test
    void shouldGroupGapsByTheRequestsDecodingAndExplainASpreadThatOnlyTheBatchSizesMake()
    {
        final IntToDoubleFunction step = b -> 0.020 + 0.006 * (b - 1);
        // a lone request, then three that overlap in part, then three alone again
        final int[] start = {0, 20, 24, 30, 70, 90, 110};
        final int[] tokens = {12, 16, 16, 16, 12, 12, 12};
        final List<double[]> arrivals = simulate(start, tokens, step, new double[]{1, 1, 1, 1, 1, 1, 1});
        final DecodeMix.Summary s = DecodeMix.of(arrivals);
        assertEquals(List.of(1, 2, 3), s.rows().stream().map(DecodeMix.Row::decoding).toList(), s.toString());
        int gaps = 0;
        for (final DecodeMix.Row r : s.rows())
        {
            assertEquals(1000 * step.applyAsDouble(r.decoding()), r.p50Ms(), 1e-9, r.toString());
            assertEquals(r.p50Ms(), r.p90Ms(), 1e-9, r.toString());
            gaps += r.gaps();
        }
        assertEquals(arrivals.stream().mapToInt(a -> a.length - 1).sum(), gaps);
        // the lone requests set the P50, the ones decoding beside others the P99: all of it is the mix
        assertTrue(s.measuredRatio() > 1.2, s.toString());
        assertEquals(s.measuredRatio(), s.mixRatio(), 1e-9, s.toString());
    }

    @Test
    void shouldLeaveASpreadAtOneBatchSizeToTheMachine()
    {
        // three requests, never at once; the second one's steps ran at half speed
        final int[] start = {0, 20, 40};
        final int[] tokens = {10, 10, 10};
        final DecodeMix.Summary s = DecodeMix.of(simulate(start, tokens, b -> 0.020, new double[]{1, 2, 1}));
        assertEquals(1, s.rows().size(), s.toString());
        assertEquals(27, s.rows().get(0).gaps());
        assertEquals(20, s.rows().get(0).p50Ms(), 1e-9);
        assertEquals(40, s.rows().get(0).p90Ms(), 1e-9);
        assertEquals(2.0, s.measuredRatio(), 1e-9, s.toString());
        assertEquals(1.0, s.mixRatio(), 1e-9, s.toString());
    }

    @Test
    void shouldPlaceAResultsTokensOnTheRunsClock()
    {
        final ServeBench.Result r = new ServeBench.Result(true, null, 8, 4, 0.25, 0.40, new double[]{0.05, 0.04, 0.06},
            3_000_000_000L);
        assertArrayEquals(new double[]{2.25, 2.30, 2.34, 2.40}, DecodeMix.arrivals(r, 1_000_000_000L), 1e-12);
        // a request of one token adds no gap and no mean; no request at all leaves the ratios undefined
        final DecodeMix.Summary one = DecodeMix.of(List.of(new double[]{1.0}));
        assertTrue(one.rows().isEmpty() && Double.isNaN(one.measuredRatio()) && Double.isNaN(one.mixRatio()),
            one.toString());
    }
}
