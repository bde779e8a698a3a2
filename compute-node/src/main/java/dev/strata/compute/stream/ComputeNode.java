package dev.strata.compute.stream;

import dev.strata.transport.TransportContext;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.SleepingMillisIdleStrategy;

import dev.strata.paramclient.ParamClient;
import dev.strata.prefetch.PrefetchStats;
import dev.strata.transport.Transport;
import io.micrometer.core.instrument.MeterRegistry;

import java.io.IOException;
import java.util.UUID;

/**
 * A stateless compute node's weights: a version pinned through the admin API ({@link RemoteModel}, with its
 * lease) and its weights streamed into a memory budget ({@link StreamingWeightSource}), as one component with a
 * {@link Context}, {@link #launch} and {@link #close}. The forward pass and its workers take
 * {@link #weights()}; several of them may share it.
 * <p>
 * A process that runs several roles shares one Aeron transport and one meter registry among them: pass them in
 * the context and the node uses them without closing them.
 */
public final class ComputeNode implements AutoCloseable
{
    /** Every setting of a node, with defaults, checked once by {@link #conclude()}. */
    public static final class Context
    {
        private String paramServer;
        private String token;
        private String model;
        private String version = "stable";
        private String nodeName;
        private long leaseMillis = 60_000;
        private StreamingWeightSource.Options options = StreamingWeightSource.Options.defaults(Long.MAX_VALUE);
        private PrefetchStats stats;
        private MeterRegistry meterRegistry;
        private Transport transport;
        private long reportIntervalMillis = 1_000;

        /** {@code host:port} of the service's admin API (required). */
        public Context paramServer(final String hostPort)
        {
            this.paramServer = hostPort;
            return this;
        }

        /** The service's token; null for an open service. */
        public Context token(final String t)
        {
            this.token = t;
            return this;
        }

        /** The model's name (required). */
        public Context model(final String name)
        {
            this.model = name;
            return this;
        }

        /** A version number or label, resolved once at launch ({@code stable} by default). */
        public Context version(final String versionOrLabel)
        {
            this.version = versionOrLabel;
            return this;
        }

        /** This node's name, for its lease ({@code node-<pid>-<random>} by default). */
        public Context nodeName(final String name)
        {
            this.nodeName = name;
            return this;
        }

        /** The lease's length, renewed every third of it (60 s by default). */
        public Context leaseMillis(final long millis)
        {
            this.leaseMillis = millis;
            return this;
        }

        /** The streaming settings: budget, prefetch, transport mode, retries. */
        public Context options(final StreamingWeightSource.Options o)
        {
            this.options = o;
            return this;
        }

        /** Where prefetch statistics are counted (a new one by default). */
        public Context stats(final PrefetchStats s)
        {
            this.stats = s;
            return this;
        }

        /** A registry shared with other roles; the prefetch statistics are registered there. */
        public Context meterRegistry(final MeterRegistry registry)
        {
            this.meterRegistry = registry;
            return this;
        }

        /**
         * A transport shared with other roles of this process (in IPC mode it must be on the service's media
         * driver, as the service's own transport is); by default the node opens its own.
         */
        public Context transport(final Transport shared)
        {
            this.transport = shared;
            return this;
        }

        /**
         * How often the node reports its prefetch statistics to the service over Aeron (1000 ms by default; 0: never);
         * the service pushes setting changes back on the same path.
         */
        public Context reportIntervalMillis(final long millis)
        {
            this.reportIntervalMillis = millis;
            return this;
        }

        /**
         * Validates every setting once and fills in defaults.
         *
         * @throws IllegalArgumentException naming the first bad value.
         */
        public Context conclude()
        {
            if (paramServer == null || paramServer.isBlank())
            {
                throw new IllegalArgumentException("invalid paramServer=" + paramServer + " (host:port of the admin API)");
            }
            if (model == null || model.isBlank())
            {
                throw new IllegalArgumentException("invalid model=" + model);
            }
            if (version == null || version.isBlank())
            {
                throw new IllegalArgumentException("invalid version=" + version + " (a number, stable or canary)");
            }
            if (leaseMillis < 3_000)
            {
                throw new IllegalArgumentException("invalid leaseMillis=" + leaseMillis + " (at least 3000)");
            }
            if (options == null || options.budgetBytes() <= 0)
            {
                throw new IllegalArgumentException("invalid options: a positive memory budget is needed");
            }
            if (reportIntervalMillis < 0)
            {
                throw new IllegalArgumentException("invalid reportIntervalMillis=" + reportIntervalMillis);
            }
            if (nodeName == null)
            {
                nodeName = "node-" + ProcessHandle.current().pid() + "-" + UUID.randomUUID().toString().substring(0, 8);
            }
            if (stats == null)
            {
                stats = new PrefetchStats();
            }
            return this;
        }
    }

    private final Context ctx;
    private final RemoteModel model;
    private final StreamingWeightSource weights;
    /** The transport the node opened for itself (UDP without a shared one), or null. */
    private final Transport ownTransport;
    private final StatsReporter reporter;
    private final AgentRunner reporterRunner;

    private ComputeNode(final Context ctx, final RemoteModel model, final StreamingWeightSource weights,
        final Transport ownTransport, final StatsReporter reporter, final AgentRunner reporterRunner)
    {
        this.ctx = ctx;
        this.model = model;
        this.weights = weights;
        this.ownTransport = ownTransport;
        this.reporter = reporter;
        this.reporterRunner = reporterRunner;
    }

    /**
     * Pins the version (taking its lease), then opens the streaming source (its fetcher, its connection, the
     * global tensors). When the second step fails, the lease is released and the version unpinned before the
     * failure is rethrown.
     */
    public static ComputeNode launch(final Context context) throws IOException
    {
        context.conclude();
        final RemoteModel model = RemoteModel.open(new ParamClient(context.paramServer, context.token), context.model,
            context.version, context.nodeName, context.leaseMillis);
        Transport own = null;
        StreamingWeightSource weights = null;
        try
        {
            final boolean udp = context.options.mode() == BlockChannel.Mode.UDP;
            // over UDP the node runs its own media driver; the weights and the reporter share it
            own = context.transport == null && udp && context.reportIntervalMillis > 0 ?
                Transport.launch(new TransportContext()) : null;
            final Transport transport = context.transport != null ? context.transport : own;
            weights = new StreamingWeightSource(model, context.options, context.stats, transport);
            if (context.meterRegistry != null)
            {
                context.stats.register(context.meterRegistry); // after the source named the units
            }
            StatsReporter reporter = null;
            AgentRunner runner = null;
            if (context.reportIntervalMillis > 0)
            {
                reporter = new StatsReporter(weights, context.nodeName, context.token, context.options.mode(),
                    context.options.localHost(), transport, System::currentTimeMillis, context.reportIntervalMillis);
                // polls for pushed settings every 20 ms: a change reaches the node well within a second
                runner = new AgentRunner(new SleepingMillisIdleStrategy(20), ex -> LOG.log(System.Logger.Level.WARNING,
                    "stats reporter", ex), null, reporter);
                AgentRunner.startOnThread(runner);
            }
            return new ComputeNode(context, model, weights, own, reporter, runner);
        }
        catch (final IOException | RuntimeException ex)
        {
            if (weights != null)
            {
                weights.close();
            }
            if (own != null)
            {
                own.close();
            }
            model.close();
            throw ex;
        }
    }

    private static final System.Logger LOG = System.getLogger(ComputeNode.class.getName());

    /** The statistics reporter, or null when reporting is off. */
    public StatsReporter reporter()
    {
        return reporter;
    }

    public Context context()
    {
        return ctx;
    }

    /** The pinned version. */
    public RemoteModel model()
    {
        return model;
    }

    /** The weights, for one forward pass or several at once. */
    public StreamingWeightSource weights()
    {
        return weights;
    }

    public PrefetchStats stats()
    {
        return ctx.stats;
    }

    /** Stops the reporter, closes the weights (fetcher, connection, buffers), then releases the lease. */
    @Override
    public void close()
    {
        try
        {
            if (reporterRunner != null)
            {
                reporterRunner.close();
            }
            weights.close();
            if (ownTransport != null)
            {
                ownTransport.close();
            }
        }
        finally
        {
            model.close();
        }
    }
}
