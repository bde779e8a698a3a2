package dev.strata.compute.stream;

import dev.strata.paramclient.ServiceInfo;
import dev.strata.prefetch.PrefetchSettings;
import dev.strata.prefetch.PrefetchStats;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.NodeSettingsDecoder;
import dev.strata.transport.sbe.NodeStatsEncoder;
import io.aeron.Aeron;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.aeron.logbuffer.FragmentHandler;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.UnsafeBuffer;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.function.LongSupplier;

/**
 * Reports a node's prefetch statistics to the parameter service over Aeron once per interval (a second by
 * default), and applies the {@code NodeSettings} the service pushes back (look-ahead, predictor, budget) to the
 * streaming source at once. An {@link Agent}: {@link #doWork()} polls for settings on every call and sends a report
 * when the interval has passed, on the clock it was given (tests drive it with a fake one).
 * <p>
 * Connection: over IPC it is an Aeron client of the service's media driver (looked up through the admin API, and
 * again after a failure, since a restarted service has a new driver); over UDP it uses the node's transport.
 * A report that cannot be offered (not connected, back-pressured) is skipped, never retried: the next one carries
 * cumulative counters, so nothing is lost but one second's resolution. Per-unit accesses are sent as the change
 * since the last report that went out.
 */
public final class StatsReporter implements Agent
{
    private static final System.Logger LOG = System.getLogger(StatsReporter.class.getName());
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    private final StreamingWeightSource source;
    private final PrefetchStats stats;
    private final String node;
    private final String token;
    private final BlockChannel.Mode mode;
    private final String localHost;
    private final Transport shared;
    private final LongSupplier clockMillis;
    private final long intervalMillis;
    private final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final NodeStatsEncoder encoder = new NodeStatsEncoder();
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final NodeSettingsDecoder settingsDecoder = new NodeSettingsDecoder();
    private final FragmentHandler onSettings = this::onSettings;
    private final int responseStream = 0x2000_0000 | new SecureRandom().nextInt(0x0fff_ffff);
    private Transport own;
    private Publication publication;
    private Subscription settingsSubscription;
    private String responseChannel;
    private long[] lastUnits = new long[0];
    private long nextReport;
    private long nextConnect;
    private long generation;
    private long reports;
    private long cpuNanos;
    private volatile String lastError;
    private volatile long appliedAtMillis;

    /**
     * @param source         the streaming source whose settings are changed and whose gauges are read.
     * @param node           the node's name (its lease name).
     * @param token          the service's token (sent in case the service protects reads), or null.
     * @param shared         the node's transport, or null: then an Aeron client of the service's driver (IPC), or
     *                       a media driver of the reporter's own (UDP).
     * @param clockMillis    wall clock in milliseconds.
     * @param intervalMillis time between reports.
     */
    public StatsReporter(final StreamingWeightSource source, final String node, final String token,
        final BlockChannel.Mode mode, final String localHost, final Transport shared, final LongSupplier clockMillis,
        final long intervalMillis)
    {
        if (intervalMillis < 1)
        {
            throw new IllegalArgumentException("invalid intervalMillis=" + intervalMillis);
        }
        this.source = source;
        this.stats = source.stats();
        this.node = node;
        this.token = token == null ? "" : token;
        this.mode = mode;
        this.localHost = localHost;
        this.shared = shared;
        this.clockMillis = clockMillis;
        this.intervalMillis = intervalMillis;
    }

    @Override
    public int doWork()
    {
        final long cpuStart = THREADS.getCurrentThreadCpuTime();
        int work = 0;
        try
        {
            if (publication == null && clockMillis.getAsLong() < nextConnect)
            {
                cpuNanos += THREADS.getCurrentThreadCpuTime() - cpuStart;
                return 0; // the service was away: look it up again once an interval, not at every poll
            }
            connect();
            work += settingsSubscription.poll(onSettings, 4);
            final long now = clockMillis.getAsLong();
            if (now >= nextReport && responseChannel != null)
            {
                nextReport = now + intervalMillis;
                report(now);
                work++;
            }
        }
        catch (final RuntimeException | java.io.IOException ex)
        {
            // the service is away (or restarting): drop the connection, look it up again next time
            lastError = ex.toString();
            disconnect();
            nextReport = clockMillis.getAsLong() + intervalMillis;
            nextConnect = nextReport;
        }
        cpuNanos += THREADS.getCurrentThreadCpuTime() - cpuStart;
        return work;
    }

    private void connect() throws java.io.IOException
    {
        if (publication != null && !publication.isClosed())
        {
            if (responseChannel == null)
            {
                final String resolved = settingsSubscription.tryResolveChannelEndpointPort();
                responseChannel = mode == BlockChannel.Mode.IPC ? TransportContext.IPC_CHANNEL : resolved;
            }
            return;
        }
        disconnect();
        final ServiceInfo.Endpoints e = source.model().admin().statsEndpoints();
        final Aeron aeron;
        if (shared != null)
        {
            aeron = shared.aeron();
        }
        else
        {
            if (own == null)
            {
                own = Transport.launch(mode == BlockChannel.Mode.IPC ?
                    new TransportContext().embeddedDriver(false).aeronDirectory(e.aeronDir()) : new TransportContext());
            }
            aeron = own.aeron();
        }
        final boolean ipc = mode == BlockChannel.Mode.IPC;
        publication = aeron.addPublication(ipc ? e.ipcChannel() : e.udpChannel(), e.streamId());
        settingsSubscription = aeron.addSubscription(ipc ? TransportContext.IPC_CHANNEL :
            "aeron:udp?endpoint=" + localHost + ":0", responseStream);
        responseChannel = ipc ? TransportContext.IPC_CHANNEL : settingsSubscription.tryResolveChannelEndpointPort();
    }

    private void disconnect()
    {
        if (publication != null && !publication.isClosed())
        {
            closeQuietly(publication);
        }
        if (settingsSubscription != null && !settingsSubscription.isClosed())
        {
            closeQuietly(settingsSubscription);
        }
        publication = null;
        settingsSubscription = null;
        responseChannel = null;
        if (own != null && mode == BlockChannel.Mode.IPC) // the service's driver may have gone with it
        {
            closeQuietly(own);
            own = null;
        }
    }

    /**
     * Starts a reporter for {@code source} on a thread of its own (polling for settings every 20 ms, reporting every
     * second); closing the returned handle stops it and closes what it opened.
     */
    public static AutoCloseable start(final StreamingWeightSource source, final String node, final String token,
        final BlockChannel.Mode mode, final String localHost, final Transport shared, final long intervalMillis)
    {
        final StatsReporter reporter = new StatsReporter(source, node, token, mode, localHost, shared,
            System::currentTimeMillis, intervalMillis);
        final org.agrona.concurrent.AgentRunner runner = new org.agrona.concurrent.AgentRunner(
            new org.agrona.concurrent.SleepingMillisIdleStrategy(20),
            ex -> LOG.log(System.Logger.Level.WARNING, "stats reporter", ex), null, reporter);
        org.agrona.concurrent.AgentRunner.startOnThread(runner);
        return runner::close;
    }

    private static void closeQuietly(final AutoCloseable c)
    {
        try
        {
            c.close();
        }
        catch (final Exception ignored)
        {
            // the driver may be gone with the service
        }
    }

    private void report(final long now)
    {
        final PrefetchStats.Report r = stats.report();
        final StreamingWeightSource.Gauges g = source.gauges();
        final long[] latencies = stats.drainFetchLatencies();
        final long[] units = stats.unitAccesses();
        if (lastUnits.length != units.length)
        {
            lastUnits = new long[units.length];
        }
        encoder.wrapAndApplyHeader(buffer, 0, headerEncoder)
            .timestampMillis(now).settingsGeneration(generation).responseStreamId(responseStream)
            .accesses(r.accesses()).demandFetches(r.demandFetches()).prefetchIssued(r.prefetchIssued())
            .cancelled(r.cancelled()).wastedBytes(r.wastedBytes()).fetchedBytes(r.fetchedBytes())
            .stallNanos(stats.stallNanos()).tokens(r.tokens()).accuracy(r.accuracy()).coverage(r.coverage())
            .timeliness(r.timeliness()).lookahead(g.lookahead()).budgetBytes(g.budgetBytes()).usedBytes(g.usedBytes())
            .unusableBytes(g.unusableBytes()).fetchCount(latencies.length)
            .fetchP50Nanos(PrefetchStats.quantile(latencies, 0.5)).fetchP99Nanos(PrefetchStats.quantile(latencies, 0.99))
            .reportCpuNanos(cpuNanos).layers(stats.layers()).experts(stats.experts())
            .sampledTokens(stats.sampledTokens());
        int changed = 0;
        for (int u = 0; u < units.length; u++)
        {
            changed += units[u] != lastUnits[u] ? 1 : 0;
        }
        final NodeStatsEncoder.UnitsEncoder group = encoder.unitsCount(changed);
        for (int u = 0; u < units.length; u++)
        {
            if (units[u] != lastUnits[u])
            {
                group.next().unit(u).accessCount(units[u] - lastUnits[u]);
            }
        }
        encoder.node(node).modelVersion(source.model().pinned()).responseChannel(responseChannel).token(token);
        final long result = publication.offer(buffer, 0, MessageHeaderEncoder.ENCODED_LENGTH + encoder.encodedLength());
        if (result > 0)
        {
            System.arraycopy(units, 0, lastUnits, 0, units.length);
            reports++;
        }
        else if (result == Publication.CLOSED || result == Publication.MAX_POSITION_EXCEEDED)
        {
            throw new IllegalStateException("stats publication " + result);
        }
    }

    private void onSettings(final DirectBuffer b, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        headerDecoder.wrap(b, offset);
        if (headerDecoder.schemaId() != NodeSettingsDecoder.SCHEMA_ID ||
            headerDecoder.templateId() != NodeSettingsDecoder.TEMPLATE_ID)
        {
            return;
        }
        settingsDecoder.wrapAndApplyHeader(b, offset, headerDecoder);
        final long gen = settingsDecoder.generation();
        if (gen <= generation)
        {
            return; // already applied (the service repeats settings to a node that reports an older generation)
        }
        final short predictor = settingsDecoder.predictor();
        try
        {
            final PrefetchSettings next = new PrefetchSettings(settingsDecoder.lookahead(),
                PrefetchSettings.Kind.values()[Math.clamp(predictor, 0, PrefetchSettings.Kind.values().length - 1)],
                settingsDecoder.nodeBudgetBytes());
            source.apply(next);
            LOG.log(System.Logger.Level.INFO, "node " + node + " applied settings generation " + gen + ": " + next);
        }
        catch (final IllegalArgumentException ex)
        {
            LOG.log(System.Logger.Level.WARNING, "node " + node + " refused settings generation " + gen + ": " +
                ex.getMessage());
        }
        generation = gen; // refused or applied: not asked again until the next change
        appliedAtMillis = clockMillis.getAsLong();
        nextReport = 0; // report at once, so the change shows within the second
    }

    /** Reports offered successfully. */
    public long reports()
    {
        return reports;
    }

    /** The settings generation applied last (0: none). */
    public long generation()
    {
        return generation;
    }

    /** When the last pushed settings were taken (applied or refused), on the reporter's clock; 0 before. */
    public long appliedAtMillis()
    {
        return appliedAtMillis;
    }

    /** CPU time the reporter's own work took so far. */
    public long cpuNanos()
    {
        return cpuNanos;
    }

    /** The last connection failure, or null. */
    public String lastError()
    {
        return lastError;
    }

    @Override
    public void onClose()
    {
        disconnect();
        if (own != null)
        {
            closeQuietly(own);
            own = null;
        }
    }

    @Override
    public String roleName()
    {
        return "strata-stats-reporter";
    }
}
