package dev.strata.serve;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.stream.RemoteModel;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.prefetch.PrefetchStats;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.UnaryOperator;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Model versions served from a parameter service. A request's model resolves at admission to one version:
 * <ul>
 * <li>{@code NAME@V} or the {@code X-Strata-Version} header (a number, or {@code NAME@V}): that version;</li>
 * <li>{@code NAME:LABEL}: the version the label names now;</li>
 * <li>{@code NAME}: the stable version, or, while a canary runs with weight W, the canary for W% of requests: the
 * choice is sticky per {@code user} (a hash of it picks the bucket), random without one.</li>
 * </ul>
 * The first request for a version launches it: the node pins it (a lease the service honours: the version cannot
 * be removed while it is served), streams its weights into a budget, and starts its engine on the process's
 * compute pool. Promote and rollback change what new requests resolve to at once; requests in flight keep the
 * version they started with. A name's labels are read again when older than the refresh interval.
 */
public final class ParamCatalog implements ModelCatalog, AutoCloseable
{
    private static final Logger LOG = Logger.getLogger(ParamCatalog.class.getName());
    /** Default of how long a name's labels, as last read, are used. */
    public static final long REFRESH_MILLIS = 250;

    /** A launched version. */
    private record Launched(ServedModel served, RemoteModel remote, StreamingWeightSource weights,
        AtomicInteger inFlight, AutoCloseable reporter)
    {
    }

    /** Stable and canary of a name as last read. */
    private record Labels(Integer stable, Integer canary, int canaryWeight, long readAt)
    {
    }

    private final ParamClient admin;
    private final String node;
    private final StreamingWeightSource.Options weightOptions;
    private final UnaryOperator<Engine.Context> engineSettings;
    private final Map<String, Launched> launched = new ConcurrentHashMap<>();
    private final Map<String, Labels> labels = new ConcurrentHashMap<>();
    private final long refreshMillis;
    private volatile boolean closed;

    /** As {@link #ParamCatalog(ParamClient, String, StreamingWeightSource.Options, UnaryOperator, long)} with labels
     * read at most every {@value #REFRESH_MILLIS} ms. */
    public ParamCatalog(final ParamClient admin, final String node, final StreamingWeightSource.Options weightOptions,
        final UnaryOperator<Engine.Context> engineSettings)
    {
        this(admin, node, weightOptions, engineSettings, REFRESH_MILLIS);
    }

    /**
     * @param admin          the service's admin API.
     * @param node           this node's name in leases.
     * @param weightOptions  how versions' weights stream (budget, prefetch, transport).
     * @param engineSettings fills an engine's context (pool, KV memory, limits) for a version.
     * @param refreshMillis  how long a name's stable and canary labels, as last read, are used (0: every request).
     */
    public ParamCatalog(final ParamClient admin, final String node, final StreamingWeightSource.Options weightOptions,
        final UnaryOperator<Engine.Context> engineSettings, final long refreshMillis)
    {
        this.refreshMillis = refreshMillis;
        this.admin = admin;
        this.node = node;
        this.weightOptions = weightOptions;
        this.engineSettings = engineSettings;
    }

    @Override
    public List<ServedModel> models()
    {
        return launched.values().stream().map(Launched::served).toList();
    }

    /** Launches a version ahead of its first request (strata serve does it for the version it starts with). */
    public ServedModel launch(final String model, final int version) throws IOException
    {
        return launchedOrNew(model, version).served();
    }

    @Override
    public Lease acquire(final String requested, final String pinnedVersion, final String user)
    {
        if (closed)
        {
            throw new ApiError(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        final String name;
        final int version;
        try
        {
            final int at = requested.lastIndexOf('@');
            final int colon = requested.lastIndexOf(':');
            if (pinnedVersion != null)
            {
                name = at > 0 ? requested.substring(0, at) : colon > 0 ? requested.substring(0, colon) : requested;
                final String v = pinnedVersion.contains("@") ? pinnedVersion.substring(pinnedVersion.lastIndexOf('@')
                    + 1) : pinnedVersion;
                version = parseVersion(v, "X-Strata-Version");
                if (pinnedVersion.contains("@") && !pinnedVersion.startsWith(name + "@"))
                {
                    throw ApiError.invalid("model", "X-Strata-Version " + pinnedVersion + " is not a version of " +
                        name);
                }
                admin.show(name, String.valueOf(version));
            }
            else if (at > 0)
            {
                name = requested.substring(0, at);
                version = parseVersion(requested.substring(at + 1), "model");
                admin.show(name, String.valueOf(version));
            }
            else if (colon > 0)
            {
                name = requested.substring(0, colon);
                version = admin.show(name, requested.substring(colon + 1)).version();
            }
            else
            {
                name = requested;
                version = choose(name, user);
            }
        }
        catch (final ParamClient.ServiceException e)
        {
            if (e.status() == 404 || e.status() == 400)
            {
                throw new ApiError(404, "invalid_request_error", "model", "model_not_found", "The model '" +
                    requested + "' does not exist: " + e.getMessage());
            }
            throw new ApiError(503, "server_error", null, null, "parameter service: " + e.getMessage());
        }
        catch (final IOException e)
        {
            throw new ApiError(503, "server_error", null, null, "parameter service unreachable: " + e.getMessage());
        }
        final Launched l;
        try
        {
            l = launchedOrNew(name, version);
        }
        catch (final IOException e)
        {
            throw new ApiError(503, "server_error", null, null, "cannot load " + name + "@" + version + ": " +
                e.getMessage());
        }
        l.inFlight.incrementAndGet();
        return new Lease()
        {
            @Override
            public ServedModel model()
            {
                return l.served();
            }

            @Override
            public void close()
            {
                l.inFlight.decrementAndGet();
            }
        };
    }

    /** Requests holding a version now. */
    public int inFlight(final String id)
    {
        final Launched l = launched.get(id);
        return l == null ? 0 : l.inFlight.get();
    }

    private static int parseVersion(final String v, final String param)
    {
        if (!v.matches("[0-9]{1,9}"))
        {
            throw ApiError.invalid(param, "version must be a number, not '" + v + "'");
        }
        return Integer.parseInt(v);
    }

    /** The stable version, or the canary for its share of requests (sticky per user). */
    private int choose(final String name, final String user) throws IOException
    {
        Labels l = labels.get(name);
        final long now = System.currentTimeMillis();
        if (l == null || now - l.readAt() >= refreshMillis)
        {
            ServiceInfo.ModelSummary summary = null;
            for (final ServiceInfo.ModelSummary s : admin.models())
            {
                if (s.name().equals(name))
                {
                    summary = s;
                }
            }
            if (summary == null)
            {
                throw new ParamClient.ServiceException(404, "unknown model " + name);
            }
            int weight = 0;
            if (summary.canary() != null)
            {
                final Integer w = admin.show(name, String.valueOf(summary.canary())).canaryWeight();
                weight = w == null ? 0 : w;
            }
            l = new Labels(summary.stable(), summary.canary(), weight, now);
            labels.put(name, l);
        }
        if (l.canary() != null && bucket(user) < l.canaryWeight())
        {
            return l.canary();
        }
        if (l.stable() == null)
        {
            throw new ParamClient.ServiceException(404, name + " has no stable version");
        }
        return l.stable();
    }

    /** 0..99: from the user's hash (sticky), or random without a user. */
    static int bucket(final String user)
    {
        if (user == null || user.isEmpty())
        {
            return ThreadLocalRandom.current().nextInt(100);
        }
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < user.length(); i++)
        {
            h = (h ^ user.charAt(i)) * 0x100000001b3L;
        }
        h ^= h >>> 33;
        return (int)Long.remainderUnsigned(h * 0xff51afd7ed558ccdL, 100);
    }

    private Launched launchedOrNew(final String name, final int version) throws IOException
    {
        final String id = name + "@" + version;
        final Launched existing = launched.get(id);
        if (existing != null)
        {
            return existing;
        }
        synchronized (this)
        {
            final Launched again = launched.get(id);
            if (again != null)
            {
                return again;
            }
            if (closed)
            {
                throw new IOException("closed");
            }
            final RemoteModel remote = RemoteModel.open(admin, name, String.valueOf(version), node, 60_000);
            StreamingWeightSource weights = null;
            try
            {
                weights = new StreamingWeightSource(remote, weightOptions, new PrefetchStats());
                final Tokenizer tokenizer = Tokenizer.fromGguf(remote.metadata());
                final Engine engine = Engine.launch(engineSettings.apply(new Engine.Context()).weights(weights)
                    .tokenizer(tokenizer).modelVersion(remote.pinned() + ":" + dev.strata.transport.BlockId.of(remote.manifest().encode()).hex())
                    .name("strata-engine-" + id));
                // the node reports its prefetch statistics to the service (the dashboard) and takes its knobs
                final AutoCloseable reporter = dev.strata.compute.stream.StatsReporter.start(weights, node,
                    admin.token(), weightOptions.mode(), weightOptions.localHost(), null, 1_000);
                final Launched l = new Launched(new ServedModel(id, engine, tokenizer,
                    ChatTemplate.fromMetadata(remote.metadata()), System.currentTimeMillis() / 1000), remote, weights,
                    new AtomicInteger(), reporter);
                launched.put(id, l);
                LOG.info("serving " + id);
                return l;
            }
            catch (final IOException | RuntimeException e)
            {
                if (weights != null)
                {
                    weights.close();
                }
                remote.close();
                throw e;
            }
        }
    }

    /** Stops every engine, then releases the versions' leases. */
    @Override
    public void close()
    {
        closed = true;
        final List<Launched> all = new ArrayList<>(launched.values());
        launched.clear();
        for (final Launched l : all)
        {
            try
            {
                ((Engine)l.served().engine()).close();
                try
                {
                    l.reporter().close();
                }
                catch (final Exception e)
                {
                    LOG.log(Level.WARNING, "stopping the reporter of " + l.served().id(), e);
                }
                l.weights().close();
                l.remote().close();
            }
            catch (final RuntimeException e)
            {
                LOG.log(Level.WARNING, "closing " + l.served().id(), e);
            }
        }
    }
}
