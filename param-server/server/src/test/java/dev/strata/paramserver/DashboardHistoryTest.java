package dev.strata.paramserver;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.StringWriter;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The dashboard's history: per-second figures from cumulative reports, incremental reads, expiry. */
class DashboardHistoryTest
{
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A report of a 4-layer node at {@code atMillis}: cumulative counters as given, layer 0 accessed {@code unit0} times. */
    private static DashboardHistory.NodeReport report(final String node, final long atMillis, final long accesses,
        final long demand, final long tokens, final long stallNanos, final long unit0)
    {
        return new DashboardHistory.NodeReport(node, "m@1", atMillis, 0, accesses, demand, 0, 0, 0, 0, stallNanos,
            tokens, 0.5, 0.25, 1.0, 2, 1000, 800, 200, 3, 5_000_000, 9_000_000, 0, 4, 0, 0, new int[]{0},
            new long[]{unit0});
    }

    @Test
    void shouldCountSampledTokensWhereTheEngineCountsThem() throws Exception
    {
        final DashboardHistory h = new DashboardHistory();
        final DashboardHistory.NodeReport first = report("c", 300_000, 40, 0, 10, 0, 1);
        h.onReport(300, withSampled(first, 80));
        final DashboardHistory.NodeEntry e = h.onReport(301, withSampled(report("c", 301_000, 80, 0, 20, 0, 1), 400));
        // 10 batched steps decoded 320 tokens: 32 sequences a step
        assertEquals(320, write(e.series, 0).get("fields").get("tokens_per_s").get(1).asDouble(), 1e-9);
    }

    private static DashboardHistory.NodeReport withSampled(final DashboardHistory.NodeReport r, final long sampled)
    {
        return new DashboardHistory.NodeReport(r.node(), r.version(), r.timestampMillis(), r.settingsGeneration(),
            r.accesses(), r.demandFetches(), r.prefetchIssued(), r.cancelled(), r.wastedBytes(), r.fetchedBytes(),
            r.stallNanos(), r.tokens(), r.accuracy(), r.coverage(), r.timeliness(), r.lookahead(), r.budgetBytes(),
            r.usedBytes(), r.unusableBytes(), r.fetchCount(), r.fetchP50Nanos(), r.fetchP99Nanos(), r.reportCpuNanos(),
            r.layers(), r.experts(), sampled, r.units(), r.counts());
    }

    private static JsonNode write(final DashboardHistory.Series series, final long since) throws Exception
    {
        final StringWriter out = new StringWriter();
        try (JsonGenerator g = JSON.getFactory().createGenerator(out))
        {
            g.writeStartObject();
            series.write(g, since);
            g.writeEndObject();
        }
        return JSON.readTree(out.toString());
    }

    @Test
    void shouldTurnCumulativeReportsIntoPerSecondFigures() throws Exception
    {
        final DashboardHistory h = new DashboardHistory();
        h.onReport(100, report("a", 100_000, 40, 10, 10, 0, 5));
        final DashboardHistory.NodeEntry e = h.onReport(101, report("a", 101_000, 100, 25, 30, 40_000_000, 7));
        final JsonNode s = write(e.series, 0);
        assertEquals(2, s.get("t").size());
        assertEquals(101, s.get("t").get(1).asLong());
        final JsonNode f = s.get("fields");
        assertEquals(60, f.get("accesses_per_s").get(1).asDouble(), 1e-9, "100 - 40 accesses in 1 s");
        assertEquals(1 - 15.0 / 60, f.get("hit_rate").get(1).asDouble(), 1e-6, "15 demand fetches of 60 accesses");
        assertEquals(20, f.get("tokens_per_s").get(1).asDouble(), 1e-9);
        assertEquals(2.0, f.get("stall_ms_per_token").get(1).asDouble(), 1e-6, "40 ms over 20 tokens");
        assertEquals(25.0, f.get("fragmentation_pct").get(1).asDouble(), 1e-6, "200 of 800 bytes held hold no unit");
        assertEquals(0.8, f.get("budget_use").get(1).asDouble(), 1e-6);
        assertEquals(9.0, f.get("fetch_p99_ms").get(1).asDouble(), 1e-6);
        assertTrue(f.get("report_cpu_pct").get(0).isNull(), "no CPU share before a second report");
        assertEquals(12, e.unitTotals[0], "layer 0: 5 + 7 accesses");
    }

    @Test
    void shouldAnswerOnlyWhatWasFiledAfterARevisionIncludingLateSeconds() throws Exception
    {
        final DashboardHistory h = new DashboardHistory();
        final DashboardHistory.NodeEntry e = h.onReport(200, report("b", 200_000, 1, 0, 1, 0, 1));
        h.onReport(201, report("b", 201_000, 2, 0, 2, 0, 1));
        final long seen = DashboardHistory.revision();
        h.onReport(201, report("b", 201_500, 3, 0, 3, 0, 1)); // the same second again: replaces it
        h.onReport(202, report("b", 202_000, 4, 0, 4, 0, 1));
        h.onReport(199, report("b", 199_000, 0, 0, 0, 0, 1)); // older than the newest: dropped
        final JsonNode s = write(e.series, seen);
        assertEquals("[201,202]", s.get("t").toString());
        assertEquals(3, write(e.series, 0).get("t").size());
    }

    @Test
    void shouldForgetNodesSilentForTheWholeWindow()
    {
        final DashboardHistory h = new DashboardHistory();
        h.onReport(1_000, report("old", 1_000_000, 1, 0, 1, 0, 1));
        h.onReport(1_900, report("new", 1_900_000, 1, 0, 1, 0, 1));
        assertEquals(2, h.nodes().size());
        assertEquals("old", h.expire(1_000).getFirst().node);
        assertEquals(1, h.nodes().size());
        assertEquals(1, h.heat().size(), "m@1 still has a node");
        assertEquals(1, h.expire(1_900).size());
        assertEquals(0, h.heat().size(), "no node runs m@1 any more");
    }
}
