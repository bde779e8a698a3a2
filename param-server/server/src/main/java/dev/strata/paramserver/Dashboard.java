package dev.strata.paramserver;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.prefetch.LayerTrace;
import dev.strata.prefetch.TraceReplay;
import dev.strata.transport.StatsStreams;
import dev.strata.transport.TransportContext;
import io.aeron.Subscription;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.Fields;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The prefetch tuning dashboard of a parameter service: the statistics nodes report over Aeron (collected by a
 * {@link NodeStatsCollector} agent into a 15-minute {@link DashboardHistory}), exposed on the admin port as
 * Prometheus meters and JSON, the page itself, the knobs ({@link DashboardKnobs}) and the what-if replay of recorded
 * traces ({@link TraceReplay}). A small facade: {@link #launch} opens the subscriptions and starts the agent, and the
 * admin server hands it the requests under {@code /dashboard} and {@code /v1/dashboard}.
 * <pre>
 * GET  /dashboard                          the page (uPlot from its WebJar, served from the jar)
 * GET  /v1/dashboard/endpoints             where nodes send their reports (Aeron IPC and UDP, stream 1002)
 * GET  /v1/dashboard/series?since=R        samples filed after revision R (all 15 minutes without it); the
 *                                          answer's "revision" is the R to ask with next
 * GET  /v1/dashboard/settings              the knobs
 * POST /v1/dashboard/settings   [token]    change knobs: {"lookahead": 3, "predictor": "layer-order", ...}
 * GET  /v1/dashboard/traces                recorded traces under DATA/traces
 * PUT  /v1/dashboard/traces/{name} [token] store a trace (LayerTrace text)
 * POST /v1/dashboard/replay     [token]    {"trace": name, "settings": [{"budget_bytes": ..., "lookahead": ...,
 *                                           "prefetch": true, "link_bytes_per_second": ...}, ...]}
 * </pre>
 */
final class Dashboard implements AutoCloseable
{
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The series' writer: Schubfach for the ~300 thousand doubles of 16 nodes x 15 minutes. */
    private static final com.fasterxml.jackson.core.JsonFactory SERIES_JSON = com.fasterxml.jackson.core.JsonFactory
        .builder().enable(com.fasterxml.jackson.core.StreamWriteFeature.USE_FAST_DOUBLE_WRITER).build();
    private static final Pattern TRACE_NAME = Pattern.compile("[A-Za-z0-9._-]{1,64}");
    private static final int MAX_TRACE_BYTES = 64 << 20;
    private static final String UPLOT = "META-INF/resources/webjars/uplot/1.6.30/dist/";
    private static final long[] THRESHOLDS = {50, 15, 10_000};

    private final ParamService service;
    private final byte[] token;
    private final Path traces;
    private final LongSupplier clockMillis;
    final DashboardHistory history = new DashboardHistory();
    final DashboardKnobs knobs;
    private final NodeStatsCollector collector;
    private final AgentRunner runner;
    private final List<Subscription> subscriptions = new ArrayList<>();
    private final PrometheusMeterRegistry metrics;
    /** Meters registered per node and version, removed with the node when it stops reporting. */
    private final Map<String, List<io.micrometer.core.instrument.Meter>> registered = new java.util.HashMap<>();
    private final io.micrometer.core.instrument.Timer seriesTimer;
    private final dev.strata.paramclient.ServiceInfo.Endpoints endpoints;
    /** The service's cumulative figures at the previous sample. */
    private final double[] previous = new double[8];

    Dashboard(final ParamService service, final String token, final boolean protectReads, final LongSupplier clock)
        throws IOException
    {
        this.service = service;
        this.token = token == null ? null : token.getBytes(StandardCharsets.UTF_8);
        this.clockMillis = clock;
        this.metrics = service.metrics();
        this.traces = service.context().dataDirPath().resolve("traces");
        Files.createDirectories(traces);
        this.knobs = new DashboardKnobs(service.context().linkBytes(), service.context().memoryBudget(),
            service.context().ssdBudget(), "cost", new DashboardKnobs.ServiceKnobs()
            {
                @Override
                public void linkBytesPerSecond(final long bytes)
                {
                    service.blockServer().linkBytesPerSecond(bytes);
                }

                @Override
                public void memoryBudgetBytes(final long bytes)
                {
                    service.memoryTier().budgetBytes(bytes);
                }

                @Override
                public void ssdBudgetBytes(final long bytes)
                {
                    service.ssdTier().budgetBytes(bytes);
                }

                @Override
                public void evictionPolicy(final String name)
                {
                    service.memoryTier().policy(dev.strata.tiering.EvictionPolicy.named(name));
                }
            });
        try
        {
            final var transport = service.transportForDashboard();
            subscriptions.add(transport.subscription(TransportContext.IPC_CHANNEL, StatsStreams.STATS_STREAM));
            // an endpoint of its own on the block server's host (a second subscription to the block server's resolved
            // address would be a second bind of its port); nodes find it through /v1/dashboard/endpoints
            final String host = service.context().udpEndpointSetting();
            final Subscription udp = transport.subscription("aeron:udp?endpoint=" +
                host.substring(0, host.lastIndexOf(':')) + ":0", StatsStreams.STATS_STREAM);
            subscriptions.add(udp);
            endpoints = new dev.strata.paramclient.ServiceInfo.Endpoints(service.endpoints().aeronDir(),
                TransportContext.IPC_CHANNEL, resolve(udp), StatsStreams.STATS_STREAM);
            // nodes report with the token they pull blocks with: the admin one or the read-only node token
            collector = new NodeStatsCollector(subscriptions, transport.aeron(), history, knobs, this::sample, clock,
                protectReads ? token : null, protectReads ? service.context().readToken() : null);
            runner = new AgentRunner(new BackoffIdleStrategy(100, 10, 1_000, 1_000_000),
                ex -> System.getLogger(Dashboard.class.getName()).log(System.Logger.Level.ERROR, "collector", ex),
                null, collector);
            AgentRunner.startOnThread(runner);
        }
        catch (final RuntimeException ex)
        {
            subscriptions.forEach(Subscription::close);
            throw ex;
        }
        seriesTimer = io.micrometer.core.instrument.Timer.builder("strata.dashboard.series")
            .description("time to build the JSON of /v1/dashboard/series on the service").register(metrics);
        Gauge.builder("strata.dashboard.reports", collector, NodeStatsCollector::reports).register(metrics);
        Gauge.builder("strata.dashboard.reports.rejected", collector, NodeStatsCollector::rejected).register(metrics);
        Gauge.builder("strata.dashboard.settings.generation", knobs, DashboardKnobs::generation).register(metrics);
        Gauge.builder("strata.dashboard.knob.changes", knobs, DashboardKnobs::changes).register(metrics);
    }

    /** The collector's UDP channel once the driver has bound it (bounded wait). */
    private static String resolve(final Subscription udp) throws IOException
    {
        final long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
        String channel;
        while ((channel = udp.tryResolveChannelEndpointPort()) == null)
        {
            if (System.nanoTime() > deadline)
            {
                throw new IOException("could not bind the statistics endpoint " + udp.channel());
            }
            Thread.yield();
        }
        return channel;
    }

    @Override
    public void close()
    {
        runner.close();
        subscriptions.forEach(Subscription::close);
    }

    NodeStatsCollector collector()
    {
        return collector;
    }

    // ---- sampling (the collector's thread)

    private double counter(final String name, final String tier)
    {
        final FunctionCounter c = metrics.find(name).tag("tier", tier).functionCounter();
        return c == null ? 0 : c.count();
    }

    private double gauge(final String name, final String tier)
    {
        final Gauge g = metrics.find(name).tag("tier", tier).gauge();
        return g == null ? Double.NaN : g.value();
    }

    private void sample(final long second)
    {
        final String[] tiers = {"memory", "ssd", "object"};
        final double[] now = new double[8];
        for (int t = 0; t < 3; t++)
        {
            now[2 * t] = counter("strata.tier.hits", tiers[t]);
            now[2 * t + 1] = counter("strata.tier.misses", tiers[t]);
        }
        now[6] = service.blockServer().served();
        now[7] = service.blockServer().servedBytes();
        final double[] row = new double[DashboardHistory.SERVICE_FIELDS.length];
        for (int i = 0; i < 6; i++)
        {
            row[i] = now[i] - previous[i];
        }
        for (int t = 0; t < 3; t++)
        {
            row[6 + t] = gauge("strata.tier.used.bytes", tiers[t]);
            final double lookups = row[2 * t] + row[2 * t + 1];
            row[9 + t] = lookups == 0 ? Double.NaN : row[2 * t] / lookups;
        }
        row[12] = now[6] - previous[6];
        row[13] = now[7] - previous[7];
        row[14] = knobs.linkBytesPerSecond();
        System.arraycopy(now, 0, previous, 0, now.length);
        history.service.add(second, row);
        registerNodeMeters();
        // nodes come and go (a restarted node has a new name): one silent for the whole window leaves the history and
        // /metrics, so neither grows with every node that ever reported
        for (final DashboardHistory.NodeEntry gone : history.expire(second - DashboardHistory.SECONDS))
        {
            final List<io.micrometer.core.instrument.Meter> meters = registered.remove(gone.node + "|" + gone.version);
            if (meters != null)
            {
                meters.forEach(metrics::remove);
            }
        }
    }

    /** Registers Prometheus meters for nodes seen since the last sample (per node and version; per unit). */
    private void registerNodeMeters()
    {
        for (final DashboardHistory.NodeEntry e : history.nodes())
        {
            final String key = e.node + "|" + e.version;
            if (registered.containsKey(key) || e.last == null)
            {
                continue;
            }
            final List<io.micrometer.core.instrument.Meter> meters = new ArrayList<>();
            registered.put(key, meters);
            for (int f = 0; f < DashboardHistory.NODE_FIELDS.length; f++)
            {
                final int field = f;
                meters.add(Gauge.builder("strata.node." + DashboardHistory.NODE_FIELDS[f].replace('_', '.'), e,
                    n -> n.lastRow[field]).tag("node", e.node).tag("version", e.version).register(metrics));
            }
            final DashboardHistory.NodeReport r = e.last;
            final int units = r.layers() + r.layers() * r.experts();
            for (int u = 0; u < units; u++)
            {
                final int unit = u;
                final boolean expert = u >= r.layers();
                meters.add(FunctionCounter.builder("strata.node.unit.accesses", e,
                        n -> unit < n.unitTotals.length ? n.unitTotals[unit] : 0)
                    .tag("node", e.node).tag("version", e.version)
                    .tag("layer", Integer.toString(expert ? (u - r.layers()) / r.experts() : u))
                    .tag("expert", expert ? Integer.toString((u - r.layers()) % r.experts()) : "none")
                    .register(metrics));
            }
        }
    }

    // ---- HTTP

    /** Handles the dashboard's paths; false for any other path (the admin API's). */
    boolean handle(final Request request, final Response response, final Callback callback) throws Exception
    {
        final String path = request.getHttpURI().getPath();
        final String method = request.getMethod();
        if (path.equals("/dashboard") || path.equals("/dashboard/"))
        {
            requireMethod(method, "GET");
            resource(response, callback, "dashboard/index.html", "text/html; charset=utf-8");
            return true;
        }
        if (path.startsWith("/dashboard/"))
        {
            final String file = path.substring("/dashboard/".length());
            switch (file)
            {
                case "dashboard.js" -> resource(response, callback, "dashboard/dashboard.js", "text/javascript");
                case "uPlot.iife.min.js" -> resource(response, callback, UPLOT + file, "text/javascript");
                case "uPlot.min.css" -> resource(response, callback, UPLOT + file, "text/css");
                default -> throw new AdminServer.HttpError(404, "no such file: " + path);
            }
            return true;
        }
        if (!path.startsWith("/v1/dashboard/"))
        {
            return false;
        }
        final String[] p = path.substring("/v1/dashboard/".length()).split("/", -1);
        final Fields query = Request.extractQueryParameters(request);
        switch (p[0])
        {
            case "endpoints" ->
            {
                requireMethod(method, "GET");
                json(response, callback, 200, endpoints);
            }
            case "series" ->
            {
                requireMethod(method, "GET");
                final String since = query.getValue("since");
                final long t0 = System.nanoTime();
                final byte[] body = series(since == null ? 0 : parseLong(since, "since"));
                final long took = System.nanoTime() - t0;
                seriesTimer.record(took, java.util.concurrent.TimeUnit.NANOSECONDS);
                response.getHeaders().put("Server-Timing", String.format(java.util.Locale.ROOT, "json;dur=%.2f", took / 1e6));
                send(response, callback, 200, "application/json", body);
            }
            case "settings" ->
            {
                if (method.equals("GET"))
                {
                    json(response, callback, 200, Map.of("settings", knobs.describe(), "events", knobs.events()));
                }
                else
                {
                    requireMethod(method, "POST");
                    requireToken(request);
                    final JsonNode body = parse(request);
                    final var events = knobs.change(body, "admin@" + Request.getRemoteAddr(request),
                        clockMillis.getAsLong());
                    json(response, callback, 200, Map.of("settings", knobs.describe(), "changed", events));
                }
            }
            case "traces" -> traces(request, response, callback, method, p);
            case "replay" ->
            {
                requireMethod(method, "POST");
                requireToken(request);
                json(response, callback, 200, replay(parse(request)));
            }
            default -> throw new AdminServer.HttpError(404, "no such endpoint: " + method + " " + path);
        }
        return true;
    }

    private void traces(final Request request, final Response response, final Callback callback, final String method,
        final String[] p) throws IOException
    {
        if (p.length == 1 || p[1].isEmpty())
        {
            requireMethod(method, "GET");
            final List<Map<String, Object>> list = new ArrayList<>();
            try (Stream<Path> files = Files.list(traces))
            {
                for (final Path f : files.sorted().toList())
                {
                    if (TRACE_NAME.matcher(f.getFileName().toString()).matches())
                    {
                        list.add(Map.of("name", f.getFileName().toString(), "bytes", Files.size(f)));
                    }
                }
            }
            json(response, callback, 200, Map.of("traces", list));
            return;
        }
        final String name = traceName(p[1]);
        requireMethod(method, "PUT");
        requireToken(request);
        final byte[] body;
        try (InputStream in = Content.Source.asInputStream(request))
        {
            body = in.readNBytes(MAX_TRACE_BYTES + 1);
        }
        if (body.length > MAX_TRACE_BYTES)
        {
            throw new AdminServer.HttpError(413, "a trace is at most " + MAX_TRACE_BYTES + " bytes");
        }
        final Path tmp = traces.resolve(name + ".upload");
        Files.write(tmp, body);
        try
        {
            LayerTrace.read(tmp); // refuse what a replay could not read
        }
        catch (final IOException ex)
        {
            Files.deleteIfExists(tmp);
            throw new IllegalArgumentException("not a trace: " + ex.getMessage().replace(tmp.toString(), name));
        }
        Files.move(tmp, traces.resolve(name), java.nio.file.StandardCopyOption.REPLACE_EXISTING,
            java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        json(response, callback, 200, Map.of("name", name, "bytes", body.length));
    }

    private static String traceName(final String name)
    {
        if (!TRACE_NAME.matcher(name).matches() || name.startsWith("."))
        {
            throw new IllegalArgumentException("invalid trace name '" + name + "' (letters, digits, . _ -; at most 64)");
        }
        return name;
    }

    /** The recorded run and one replay per settings entry. */
    Map<String, Object> replay(final JsonNode body) throws IOException
    {
        if (body == null || !body.hasNonNull("trace"))
        {
            throw new IllegalArgumentException("a replay needs {\"trace\": NAME, \"settings\": [...]}");
        }
        final Path file = traces.resolve(traceName(body.get("trace").asText()));
        if (!Files.exists(file))
        {
            throw new AdminServer.HttpError(404, "no trace named " + file.getFileName());
        }
        final LayerTrace trace = LayerTrace.read(file);
        final List<Map<String, Object>> replays = new ArrayList<>();
        final JsonNode list = body.path("settings");
        if (list.isArray())
        {
            for (final JsonNode s : list)
            {
                replays.add(describe(TraceReplay.replay(trace, settings(trace.settings(), s))));
            }
        }
        return Map.of("trace", file.getFileName().toString(), "recorded", describe(TraceReplay.recorded(trace)),
            "replays", replays);
    }

    /** Settings of a replay: the trace's, with what the request names changed. */
    static LayerTrace.Settings settings(final LayerTrace.Settings base, final JsonNode s)
    {
        final long budget = s.has("budget_bytes") ? positive(s.get("budget_bytes"), "budget_bytes") : base.budgetBytes();
        final long link = s.has("link_bytes_per_second") ? positive(s.get("link_bytes_per_second"),
            "link_bytes_per_second") : base.linkBytesPerSecond();
        final int look;
        if (s.has("lookahead"))
        {
            final JsonNode l = s.get("lookahead");
            if (!l.isIntegralNumber() || l.asInt() < 0 || l.asInt() > dev.strata.prefetch.PrefetchSettings.MAX_LOOKAHEAD)
            {
                throw new IllegalArgumentException("invalid lookahead=" + l + " (0 = adaptive, or 1..64)");
            }
            look = l.asInt();
        }
        else
        {
            look = base.lookahead();
        }
        final boolean prefetch = s.has("prefetch") ? s.get("prefetch").asBoolean() : base.prefetch();
        return base.with(budget, look, prefetch, link);
    }

    private static long positive(final JsonNode v, final String name)
    {
        if (!v.isIntegralNumber() || v.asLong() <= 0)
        {
            throw new IllegalArgumentException("invalid " + name + "=" + v + " (a positive integer)");
        }
        return v.asLong();
    }

    static Map<String, Object> describe(final TraceReplay.Result r)
    {
        return r.fields();
    }

    /** The samples filed after revision {@code since}, as JSON. */
    byte[] series(final long since) throws IOException
    {
        final ByteArrayOutputStream out = new ByteArrayOutputStream(1 << 16);
        final long now = clockMillis.getAsLong();
        // read first: a sample filed while this answer is written may come again in the next, never be missed
        final long revision = DashboardHistory.revision();
        try (JsonGenerator json = SERIES_JSON.createGenerator(out, JsonEncoding.UTF8))
        {
            json.writeStartObject();
            json.writeNumberField("now_ms", now);
            json.writeNumberField("revision", revision);
            json.writeNumberField("window_seconds", DashboardHistory.SECONDS);
            json.writeObjectFieldStart("thresholds");
            json.writeNumberField("param_load_p99_ms", THRESHOLDS[0]);
            json.writeNumberField("fragmentation_pct", THRESHOLDS[1]);
            json.writeNumberField("service_requests_per_s", THRESHOLDS[2]);
            json.writeEndObject();
            json.writeObjectFieldStart("service");
            history.service.write(json, since);
            json.writeEndObject();
            json.writeArrayFieldStart("nodes");
            for (final DashboardHistory.NodeEntry e : history.nodes())
            {
                json.writeStartObject();
                json.writeStringField("node", e.node);
                json.writeStringField("version", e.version);
                final DashboardHistory.NodeReport last = e.last;
                json.writeNumberField("last_report_ms", last == null ? 0 : last.timestampMillis());
                json.writeNumberField("settings_generation", last == null ? 0 : last.settingsGeneration());
                e.series.write(json, since);
                json.writeEndObject();
            }
            json.writeEndArray();
            json.writeArrayFieldStart("heat");
            for (final Map.Entry<String, DashboardHistory.Heat> h : new java.util.TreeMap<>(history.heat()).entrySet())
            {
                json.writeStartObject();
                json.writeStringField("version", h.getKey());
                h.getValue().write(json, since, now / 1000);
                json.writeEndObject();
            }
            json.writeEndArray();
            json.writeArrayFieldStart("versions");
            for (final String model : service.models())
            {
                for (final ModelRegistry.Version v : service.versions(model))
                {
                    if (v.state() == VersionState.ACTIVE || v.state() == VersionState.CANARY)
                    {
                        json.writeStartObject();
                        json.writeStringField("version", model + "@" + v.number());
                        json.writeStringField("state", v.state().name().toLowerCase(java.util.Locale.ROOT));
                        json.writeNumberField("canary_weight", v.canaryWeight());
                        json.writeEndObject();
                    }
                }
            }
            json.writeEndArray();
            json.writeFieldName("settings");
            JSON.writeValue(json, knobs.describe());
            json.writeFieldName("events");
            JSON.writeValue(json, knobs.events());
            json.writeEndObject();
        }
        return out.toByteArray();
    }

    private static long parseLong(final String text, final String what)
    {
        try
        {
            return Long.parseLong(text);
        }
        catch (final NumberFormatException ex)
        {
            throw new IllegalArgumentException("invalid " + what + "=" + text + " (an integer)");
        }
    }

    private static JsonNode parse(final Request request) throws IOException
    {
        try (InputStream in = Content.Source.asInputStream(request))
        {
            final byte[] bytes = in.readNBytes(1 << 20);
            try
            {
                return JSON.readTree(bytes);
            }
            catch (final com.fasterxml.jackson.core.JsonProcessingException ex)
            {
                throw new IllegalArgumentException("the body is not JSON: " + ex.getOriginalMessage());
            }
        }
    }

    private void requireToken(final Request request)
    {
        if (token == null)
        {
            return;
        }
        final String auth = request.getHeaders().get(HttpHeader.AUTHORIZATION);
        final byte[] given = auth != null && auth.startsWith("Bearer ") ?
            auth.substring(7).getBytes(StandardCharsets.UTF_8) : new byte[0];
        if (!MessageDigest.isEqual(token, given))
        {
            throw new AdminServer.HttpError(401, auth == null ? "changing a knob needs the admin token " +
                "(Authorization: Bearer ...)" : "wrong token");
        }
    }

    private static void requireMethod(final String method, final String allowed)
    {
        if (!method.equals(allowed))
        {
            throw new AdminServer.HttpError(405, method + " is not allowed here (" + allowed + ")");
        }
    }

    private static void resource(final Response response, final Callback callback, final String name,
        final String type) throws IOException
    {
        try (InputStream in = Dashboard.class.getClassLoader().getResourceAsStream(name))
        {
            if (in == null)
            {
                throw new AdminServer.HttpError(404, "missing resource " + name);
            }
            send(response, callback, 200, type, in.readAllBytes());
        }
    }

    private static void json(final Response response, final Callback callback, final int status, final Object body)
        throws IOException
    {
        send(response, callback, status, "application/json", JSON.writeValueAsBytes(body));
    }

    private static void send(final Response response, final Callback callback, final int status, final String type,
        final byte[] bytes)
    {
        response.setStatus(status);
        response.getHeaders().put(HttpHeader.CONTENT_TYPE, type);
        response.getHeaders().put(HttpHeader.CONTENT_LENGTH, bytes.length);
        response.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-store");
        response.write(true, ByteBuffer.wrap(bytes), callback);
    }
}
