package dev.strata.paramserver;

import dev.strata.prefetch.PrefetchSettings;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.NodeSettingsEncoder;
import dev.strata.transport.sbe.NodeStatsDecoder;
import io.aeron.Aeron;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.DirectBuffer;
import org.agrona.collections.IntArrayList;
import org.agrona.collections.LongArrayList;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.UnsafeBuffer;

import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * The service's end of the node statistics path, as an {@link Agent}: reads {@code NodeStats} reports (IPC and
 * UDP, stream {@code StatsStreams.STATS_STREAM}) into the {@link DashboardHistory}, samples the service's own figures
 * once a second, and pushes {@code NodeSettings} to every node that reported, at once when the knobs change and
 * again to any node whose report shows an older generation (a lost push is repaired within a report interval).
 */
final class NodeStatsCollector implements Agent
{
    private static final System.Logger LOG = System.getLogger(NodeStatsCollector.class.getName());
    /** Nodes remembered for pushes at most (the oldest publication is closed beyond). */
    private static final int MAX_NODES = 1024;

    /** Samples the service's own figures into the history once a second. */
    @FunctionalInterface
    interface ServiceSampler
    {
        void sample(long second);
    }

    private final List<Subscription> subscriptions;
    private final FragmentAssembler[] assemblers;
    private final Aeron aeron;
    private final DashboardHistory history;
    private final DashboardKnobs knobs;
    private final ServiceSampler sampler;
    private final LongSupplier clockMillis;
    private final TokenCheck token;
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final NodeStatsDecoder decoder = new NodeStatsDecoder();
    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final NodeSettingsEncoder settingsEncoder = new NodeSettingsEncoder();
    private final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(256));
    /** Per node: where it listens for settings. */
    private final Map<String, Publication> nodes = new HashMap<>();
    private final IntArrayList units = new IntArrayList();
    private final LongArrayList counts = new LongArrayList();
    private long pushedGeneration;
    private long lastSampled;
    private volatile long reports;
    private volatile long rejected;
    private volatile long pushes;

    NodeStatsCollector(final List<Subscription> subscriptions, final Aeron aeron, final DashboardHistory history,
        final DashboardKnobs knobs, final ServiceSampler sampler, final LongSupplier clockMillis, final String token)
    {
        this(subscriptions, aeron, history, knobs, sampler, clockMillis, token, null);
    }

    /** As above, also accepting {@code readToken} (the service's read-only node token) on reports. */
    NodeStatsCollector(final List<Subscription> subscriptions, final Aeron aeron, final DashboardHistory history,
        final DashboardKnobs knobs, final ServiceSampler sampler, final LongSupplier clockMillis, final String token,
        final String readToken)
    {
        this.subscriptions = List.copyOf(subscriptions);
        this.assemblers = new FragmentAssembler[subscriptions.size()];
        for (int i = 0; i < assemblers.length; i++)
        {
            assemblers[i] = new FragmentAssembler(this::onFragment);
        }
        this.aeron = aeron;
        this.history = history;
        this.knobs = knobs;
        this.sampler = sampler;
        this.clockMillis = clockMillis;
        this.token = new TokenCheck(token, readToken);
    }

    @Override
    public int doWork()
    {
        int work = 0;
        for (int i = 0; i < subscriptions.size(); i++)
        {
            work += subscriptions.get(i).poll(assemblers[i], 16);
        }
        final long generation = knobs.generation();
        if (generation != pushedGeneration)
        {
            pushedGeneration = generation;
            final PrefetchSettings s = knobs.settings();
            for (final Publication p : nodes.values())
            {
                push(p, generation, s);
            }
            work++;
        }
        final long second = clockMillis.getAsLong() / 1000;
        if (second != lastSampled)
        {
            lastSampled = second;
            sampler.sample(second);
            work++;
        }
        return work;
    }

    private void onFragment(final DirectBuffer b, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        if (length < MessageHeaderDecoder.ENCODED_LENGTH)
        {
            rejected++;
            return;
        }
        headerDecoder.wrap(b, offset);
        if (headerDecoder.schemaId() != NodeStatsDecoder.SCHEMA_ID ||
            headerDecoder.templateId() != NodeStatsDecoder.TEMPLATE_ID)
        {
            rejected++;
            return;
        }
        try
        {
            onReport(b, offset);
        }
        catch (final IndexOutOfBoundsException | IllegalArgumentException ex)
        {
            rejected++;
        }
    }

    private void onReport(final DirectBuffer b, final int offset)
    {
        decoder.wrapAndApplyHeader(b, offset, headerDecoder);
        final long at = decoder.timestampMillis();
        final long generation = decoder.settingsGeneration();
        final int stream = decoder.responseStreamId();
        final long accesses = decoder.accesses();
        final long demand = decoder.demandFetches();
        final long issued = decoder.prefetchIssued();
        final long cancelled = decoder.cancelled();
        final long wasted = decoder.wastedBytes();
        final long fetched = decoder.fetchedBytes();
        final long stall = decoder.stallNanos();
        final long tokens = decoder.tokens();
        final double accuracy = decoder.accuracy();
        final double coverage = decoder.coverage();
        final double timeliness = decoder.timeliness();
        final int lookahead = decoder.lookahead();
        final long budget = decoder.budgetBytes();
        final long used = decoder.usedBytes();
        final long unusable = decoder.unusableBytes();
        final long fetchCount = decoder.fetchCount();
        final long p50 = decoder.fetchP50Nanos();
        final long p99 = decoder.fetchP99Nanos();
        final long cpu = decoder.reportCpuNanos();
        final int layers = decoder.layers();
        final int experts = decoder.experts();
        final long sampled = decoder.sampledTokens();
        units.clear();
        counts.clear();
        for (final NodeStatsDecoder.UnitsDecoder u : decoder.units())
        {
            units.addInt(u.unit());
            counts.addLong(u.accessCount());
        }
        final String node = decoder.node();
        final String version = decoder.modelVersion();
        final String channel = decoder.responseChannel();
        final boolean authorized = !token.required() ||
            token.matches(decoder.tokenLength(), decoder.getToken(token.scratch(), 0, token.scratch().length));
        if (!authorized || node.isEmpty() || version.isEmpty() || layers < 1 || experts < 0 ||
            layers > 1 << 16 || (long)layers * (experts + 1) > 1 << 20)
        {
            rejected++;
            return;
        }
        // a report is filed under the second the node took it, when that is within the window (a node reporting late,
        // or a backlog after a pause, lands where it belongs); otherwise under the service's clock
        final long nowMillis = clockMillis.getAsLong();
        final boolean plausible = at >= nowMillis - (DashboardHistory.SECONDS + 60) * 1000L && at <= nowMillis + 5_000;
        history.onReport((plausible ? at : nowMillis) / 1000, new DashboardHistory.NodeReport(node, version, at,
            generation, accesses, demand, issued, cancelled, wasted, fetched, stall, tokens, accuracy, coverage,
            timeliness, lookahead, budget, used, unusable, fetchCount, p50, p99, cpu, layers, experts, sampled,
            units.toIntArray(), counts.toLongArray()));
        reports++;
        if (channel.startsWith("aeron:"))
        {
            final Publication p = publication(node + "|" + stream + "|" + channel, channel, stream);
            final long current = knobs.generation();
            if (p != null && generation < current)
            {
                push(p, current, knobs.settings());
            }
        }
    }

    private Publication publication(final String key, final String channel, final int stream)
    {
        Publication p = nodes.get(key);
        if (p == null || p.isClosed())
        {
            if (nodes.size() >= MAX_NODES)
            {
                nodes.values().removeIf(old -> !old.isConnected() && closed(old));
            }
            try
            {
                p = aeron.addPublication(channel, stream);
            }
            catch (final RuntimeException ex)
            {
                LOG.log(System.Logger.Level.WARNING, "cannot reach node at " + channel + ": " + ex.getMessage());
                return null;
            }
            nodes.put(key, p);
        }
        return p;
    }

    private static boolean closed(final Publication p)
    {
        p.close();
        return true;
    }

    private void push(final Publication p, final long generation, final PrefetchSettings s)
    {
        settingsEncoder.wrapAndApplyHeader(buffer, 0, headerEncoder).generation(generation)
            .lookahead(s.lookahead()).predictor((short)s.predictor().ordinal()).nodeBudgetBytes(s.nodeBudgetBytes());
        // a node not yet connected gets the settings with its next report's answer
        if (p.offer(buffer, 0, MessageHeaderEncoder.ENCODED_LENGTH + settingsEncoder.encodedLength()) > 0)
        {
            pushes++;
        }
    }

    long reports()
    {
        return reports;
    }

    long rejected()
    {
        return rejected;
    }

    long pushes()
    {
        return pushes;
    }

    @Override
    public void onClose()
    {
        nodes.values().forEach(Publication::close);
        nodes.clear();
    }

    @Override
    public String roleName()
    {
        return "strata-stats-collector";
    }
}
