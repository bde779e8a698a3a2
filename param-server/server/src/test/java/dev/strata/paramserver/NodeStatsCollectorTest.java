package dev.strata.paramserver;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.NodeSettingsDecoder;
import dev.strata.transport.sbe.NodeStatsEncoder;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The collector agent driven by calls to {@code doWork()} on a fake clock, over a real Aeron IPC driver: reports are
 * filed, the service is sampled once per second of the clock, settings are pushed when the knobs change and again to
 * a node whose report shows an older generation.
 */
class NodeStatsCollectorTest
{
    private static final int STATS = 1002;
    private static final int NODE = 0x2345_6789;
    private Transport transport;
    private Subscription stats;
    private Subscription settings;
    private Publication node;
    private final AtomicLong clock = new AtomicLong(1_000_000);
    private final List<Long> sampled = new ArrayList<>();
    private final DashboardHistory history = new DashboardHistory();
    private final DashboardKnobs knobs = new DashboardKnobs(0, 1L << 30, 16L << 30, "cost", null);
    private NodeStatsCollector collector;

    @BeforeEach
    void open()
    {
        transport = Transport.launch(new TransportContext());
        stats = transport.subscription(TransportContext.IPC_CHANNEL, STATS);
        settings = transport.subscription(TransportContext.IPC_CHANNEL, NODE);
        node = transport.publication(TransportContext.IPC_CHANNEL, STATS);
        collector = new NodeStatsCollector(List.of(stats), transport.aeron(), history, knobs, sampled::add,
            clock::get, null);
    }

    @AfterEach
    void close()
    {
        collector.onClose();
        transport.close();
    }

    /** Calls doWork until the condition holds (bounded by a count of calls, not by time). */
    private void workUntil(final String what, final BooleanSupplier condition)
    {
        for (int i = 0; i < 1_000_000; i++)
        {
            collector.doWork();
            if (condition.getAsBoolean())
            {
                return;
            }
            Thread.yield();
        }
        fail("never: " + what);
    }

    private void report(final long generation, final long tokens)
    {
        report(generation, tokens, "");
    }

    private void report(final long generation, final long tokens, final String token)
    {
        final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(4096));
        final NodeStatsEncoder e = new NodeStatsEncoder().wrapAndApplyHeader(buffer, 0, new MessageHeaderEncoder())
            .timestampMillis(clock.get()).settingsGeneration(generation).responseStreamId(NODE).accesses(tokens * 4)
            .demandFetches(0).prefetchIssued(0).cancelled(0).wastedBytes(0).fetchedBytes(0).stallNanos(0)
            .tokens(tokens).accuracy(Double.NaN).coverage(Double.NaN).timeliness(Double.NaN).lookahead(1)
            .budgetBytes(100).usedBytes(50).unusableBytes(0).fetchCount(0).fetchP50Nanos(-1).fetchP99Nanos(-1)
            .reportCpuNanos(0).layers(4).experts(0).sampledTokens(0);
        e.unitsCount(1).next().unit(2).accessCount(tokens);
        e.node("n").modelVersion("m@1").responseChannel(TransportContext.IPC_CHANNEL).token(token);
        while (node.offer(buffer, 0, MessageHeaderEncoder.ENCODED_LENGTH + e.encodedLength()) < 0)
        {
            Thread.yield();
        }
    }

    /** The settings pushed to the node so far, as (generation, lookahead). */
    private final List<long[]> pushed = new ArrayList<>();

    private int pollSettings()
    {
        return settings.poll((b, offset, length, header) ->
        {
            final MessageHeaderDecoder h = new MessageHeaderDecoder().wrap(b, offset);
            final NodeSettingsDecoder d = new NodeSettingsDecoder().wrapAndApplyHeader(b, offset, h);
            pushed.add(new long[]{d.generation(), d.lookahead()});
        }, 10);
    }

    @Test
    void shouldFileReportsSampleOncePerSecondAndPushSettings() throws Exception
    {
        while (!node.isConnected())
        {
            Thread.yield();
        }
        workUntil("a first sample", () -> !sampled.isEmpty());
        assertEquals(List.of(1_000L), sampled, "second 1000 of the clock");
        report(0, 10);
        workUntil("the report filed", () -> collector.reports() == 1);
        assertEquals(1, history.nodes().size());
        assertEquals(List.of(1_000L), sampled, "the clock has not moved: no second sample");
        clock.addAndGet(1_000);
        collector.doWork();
        assertEquals(List.of(1_000L, 1_001L), sampled);

        knobs.change(new ObjectMapper().readTree("{\"lookahead\": 3}"), "test", clock.get());
        workUntil("the push", () -> pollSettings() > 0 || !pushed.isEmpty());
        assertEquals(1, pushed.size());
        assertEquals(1, pushed.getFirst()[0], "generation 1");
        assertEquals(3, pushed.getFirst()[1]);

        // a node that reports an older generation (it missed the push) gets the settings again
        report(0, 20);
        workUntil("the report filed", () -> collector.reports() == 2);
        workUntil("the push repeated", () -> pollSettings() > 0 || pushed.size() > 1);
        assertEquals(2, pushed.size());
        // one that runs the current generation does not
        report(1, 30);
        workUntil("the report filed", () -> collector.reports() == 3);
        for (int i = 0; i < 1000; i++)
        {
            collector.doWork();
            pollSettings();
        }
        assertEquals(2, pushed.size());
        assertEquals(60, history.nodes().getFirst().unitTotals[2], "layer 2: the deltas 10 + 20 + 30 summed");
        assertEquals(0, collector.rejected());
    }

    /**
     * A service that protects reads files the reports of nodes that carry its admin token or its read-only node
     * token (what nodes hold), and drops the others.
     */
    @Test
    void shouldAcceptReportsWithTheAdminOrTheReadOnlyTokenOnly()
    {
        collector.onClose();
        collector = new NodeStatsCollector(List.of(stats), transport.aeron(), history, knobs, sampled::add,
            clock::get, "admin-token-1", "node-token-1");
        while (!node.isConnected())
        {
            Thread.yield();
        }
        report(0, 1, "node-token-1");
        workUntil("the node token's report filed", () -> collector.reports() == 1);
        report(0, 1, "admin-token-1");
        workUntil("the admin token's report filed", () -> collector.reports() == 2);
        report(0, 1, "wrong-token-1");
        report(0, 1, "");
        workUntil("two reports refused", () -> collector.rejected() == 2);
        assertEquals(2, collector.reports());
    }
}
