package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.stream.BlockChannel;
import dev.strata.compute.stream.ComputeNode;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramserver.ParamService;
import dev.strata.prefetch.LayerTrace;
import dev.strata.prefetch.PrefetchSettings;
import dev.strata.prefetch.TraceReplay;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The dashboard end to end in one process: a real parameter service and a real streaming node generating tokens;
 * the node's statistics reach the service over Aeron, the JSON and Prometheus outputs are parsed, a knob change
 * reaches the running node, and a recorded trace replays to its recorded hits and misses.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DashboardTest
{
    static final String TOKEN = "dash-token";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int[] PROMPT = {1, 72, 101, 108, 108, 111};
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    @TempDir
    static Path models;

    @TempDir
    Path data;

    static Path gguf;

    @BeforeAll
    static void synthesize() throws Exception
    {
        gguf = models.resolve("small.gguf");
        SyntheticModel.write(gguf, SyntheticModel.Shape.parse("dim=128,layers=4,heads=4,kv=2,ffn=256"),
            GgmlType.Q8_0, null, 5);
    }

    /** Generates tokens on a node until closed. */
    static final class Workload implements AutoCloseable
    {
        private final AtomicBoolean running = new AtomicBoolean(true);
        private final Thread thread;

        Workload(final StreamingWeightSource weights)
        {
            thread = Thread.ofPlatform().daemon().name("workload").start(() ->
            {
                while (running.get())
                {
                    StreamingGenerationTest.generate(weights, PROMPT, 8, t -> running.get());
                }
            });
        }

        @Override
        public void close() throws InterruptedException
        {
            running.set(false);
            thread.join(30_000);
        }
    }

    static void upload(final ParamService service)
    {
        final CliTest.Run r = CliTest.run("model", "upload", gguf.toString(), "--name", "small", "--label", "stable",
            "--server", "localhost:" + service.adminPort(), "--token", TOKEN);
        assertEquals(0, r.code(), r.err());
    }

    static HttpResponse<String> http(final int port, final String method, final String path, final String body,
        final String token) throws Exception
    {
        final HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://localhost:" + port + path))
            .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        if (token != null)
        {
            b.header("Authorization", "Bearer " + token);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode series(final int port) throws Exception
    {
        final HttpResponse<String> r = http(port, "GET", "/v1/dashboard/series", null, null);
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    /** Waits (bounded) for a condition, checking every 50 ms. */
    static void await(final String what, final long timeoutMillis, final BooleanSupplier condition) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        while (!condition.getAsBoolean())
        {
            if (System.nanoTime() > deadline)
            {
                fail("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }

    static JsonNode node(final JsonNode series, final String name)
    {
        for (final JsonNode n : series.get("nodes"))
        {
            if (n.get("node").asText().equals(name))
            {
                return n;
            }
        }
        return null;
    }

    /** The last non-null value of a node's field, or NaN. */
    static double last(final JsonNode node, final String field)
    {
        final JsonNode values = node.get("fields").get(field);
        for (int i = values.size() - 1; i >= 0; i--)
        {
            if (!values.get(i).isNull())
            {
                return values.get(i).asDouble();
            }
        }
        return Double.NaN;
    }

    private static final Pattern SAMPLE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)})?\\s+(\\S+)$");
    private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");

    /** Parses Prometheus text: one entry per sample, keyed by name and sorted labels. */
    static Map<String, Double> prometheus(final String text)
    {
        final Map<String, Double> samples = new HashMap<>();
        for (final String line : text.split("\n"))
        {
            if (line.isBlank() || line.startsWith("#"))
            {
                continue;
            }
            final Matcher m = SAMPLE.matcher(line.trim());
            assertTrue(m.matches(), "not a Prometheus sample line: " + line);
            final java.util.TreeMap<String, String> labels = new java.util.TreeMap<>();
            if (m.group(2) != null)
            {
                final Matcher l = LABEL.matcher(m.group(2));
                while (l.find())
                {
                    labels.put(l.group(1), l.group(2));
                }
            }
            samples.put(m.group(1) + labels, Double.parseDouble(m.group(3)));
        }
        return samples;
    }

    @Test
    void shouldReportNodeStatisticsToTheServiceOverAeronEverySecond() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)))
        {
            upload(service);
            final int port = service.adminPort();
            try (ComputeNode node = ComputeNode.launch(new ComputeNode.Context().paramServer("localhost:" + port)
                .token(TOKEN).model("small").nodeName("n1")
                .options(StreamingWeightSource.Options.defaults(1L << 30).withMode(BlockChannel.Mode.UDP)));
                Workload w = new Workload(node.weights()))
            {
                await("three reports with tokens from n1", 20_000, () ->
                {
                    try
                    {
                        final JsonNode n = node(series(port), "n1");
                        return n != null && n.get("t").size() >= 3 && last(n, "tokens_per_s") > 0;
                    }
                    catch (final Exception ex)
                    {
                        throw new RuntimeException(ex);
                    }
                });
                final JsonNode s = series(port);
                final JsonNode n = node(s, "n1");
                assertEquals("small@1", n.get("version").asText());
                final JsonNode t = n.get("t");
                for (int i = 1; i < t.size(); i++)
                {
                    assertTrue(t.get(i).asLong() > t.get(i - 1).asLong(), "one sample a second, in order: " + t);
                }
                for (final JsonNode values : n.get("fields"))
                {
                    assertEquals(t.size(), values.size(), "every field has a value (or null) per second");
                }
                assertEquals(1L << 30, (long)last(n, "budget_bytes"));
                assertTrue(last(n, "accesses_per_s") > 0);
                final double coverage = last(n, "coverage");
                assertTrue(coverage >= 0 && coverage <= 1, "coverage " + coverage);
                assertEquals(1, s.get("heat").size());
                final JsonNode heat = s.get("heat").get(0);
                assertEquals("small@1", heat.get("version").asText());
                assertEquals(4, heat.get("layers").asInt());
                long heatTotal = 0;
                for (final JsonNode row : heat.get("counts"))
                {
                    assertEquals(4, row.size(), "one count per layer unit");
                    for (final JsonNode c : row)
                    {
                        heatTotal += c.asLong();
                    }
                }
                final long[] nodeCounts = node.stats().unitAccesses();
                final long nodeTotal = java.util.Arrays.stream(nodeCounts).sum();
                assertTrue(heatTotal > 0 && heatTotal <= nodeTotal, "the heat map sums the node's reported accesses: " +
                    heatTotal + " of " + nodeTotal);
                assertEquals(50, s.get("thresholds").get("param_load_p99_ms").asInt());
                assertTrue(s.get("service").get("t").size() >= 2, "the service samples itself every second");

                final HttpResponse<String> metrics = http(port, "GET", "/metrics", null, null);
                final Map<String, Double> prom = prometheus(metrics.body());
                final Double layer0 = prom.get("strata_node_unit_accesses_total{expert=none, layer=0, node=n1, version=small@1}");
                assertTrue(layer0 != null && layer0 > 0 && layer0 <= node.stats().unitAccesses()[0],
                    "layer 0's accesses on /metrics (" + layer0 + ") are at most the node's own (" +
                        node.stats().unitAccesses()[0] + ")");
                assertEquals(1L << 30, prom.get("strata_node_budget_bytes{node=n1, version=small@1}"), 0.0);
                // the Grafana dashboard in the repository asks for meters that exist
                final JsonNode grafana = JSON.readTree(Path.of("..", "docs", "grafana", "strata-prefetch.json").toFile());
                final java.util.Set<String> asked = new java.util.TreeSet<>();
                final java.util.List<JsonNode> queries = new java.util.ArrayList<>(grafana.findValues("expr"));
                assertTrue(queries.size() > 15, "panels and the annotation have queries");
                for (final JsonNode expr : queries)
                {
                    final Matcher m = Pattern.compile("strata_[a-z0-9_]+").matcher(expr.asText());
                    while (m.find())
                    {
                        asked.add(m.group());
                    }
                }
                for (final String name : asked)
                {
                    assertTrue(prom.keySet().stream().anyMatch(k -> k.equals(name + "{}") || k.startsWith(name + "{")),
                        "Grafana asks for " + name + ", which /metrics does not have");
                }
                final double cpu = last(n, "report_cpu_pct");
                System.out.printf("[dashboard] reporting CPU on the node: %.4f%% of one core (last second)%n", cpu);
            }
        }
    }

    @Test
    void shouldApplyAKnobChangeOnTheRunningNodeAndRefuseBadOrUnauthorisedChanges() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)))
        {
            upload(service);
            final int port = service.adminPort();
            try (ComputeNode node = ComputeNode.launch(new ComputeNode.Context().paramServer("localhost:" + port)
                .token(TOKEN).model("small").nodeName("n2")
                .options(StreamingWeightSource.Options.defaults(1L << 30).withMode(BlockChannel.Mode.UDP)));
                Workload w = new Workload(node.weights()))
            {
                await("a first report (" + node.reporter().lastError() + ")", 20_000, () -> node.reporter().reports() > 0);
                final HttpResponse<String> anonymous = http(port, "POST", "/v1/dashboard/settings", "{\"lookahead\": 3}", null);
                assertEquals(401, anonymous.statusCode());
                assertTrue(JSON.readTree(anonymous.body()).get("error").asText().contains("token"));
                final HttpResponse<String> wrong = http(port, "POST", "/v1/dashboard/settings", "{\"lookahead\": 3}", "nope");
                assertEquals(401, wrong.statusCode());
                final HttpResponse<String> tooDeep = http(port, "POST", "/v1/dashboard/settings", "{\"lookahead\": 100}", TOKEN);
                assertEquals(400, tooDeep.statusCode());
                assertEquals("invalid lookahead=100 (0..64)", JSON.readTree(tooDeep.body()).get("error").asText());
                final HttpResponse<String> bogus = http(port, "POST", "/v1/dashboard/settings",
                    "{\"lookahead\": 2, \"predictor\": \"oracle\"}", TOKEN);
                assertEquals(400, bogus.statusCode());
                assertEquals("invalid predictor=oracle (learned, layer-order or none)",
                    JSON.readTree(bogus.body()).get("error").asText());
                assertEquals(0, node.weights().settings().lookahead(), "a refused change changes nothing");

                final long sent = System.nanoTime();
                final HttpResponse<String> ok = http(port, "POST", "/v1/dashboard/settings", "{\"lookahead\": 3}", TOKEN);
                assertEquals(200, ok.statusCode(), ok.body());
                final JsonNode changed = JSON.readTree(ok.body()).get("changed");
                assertEquals(1, changed.size());
                assertEquals("lookahead", changed.get(0).get("knob").asText());
                assertEquals("3", changed.get(0).get("to").asText());
                await("the node to apply look-ahead 3", 5_000, () -> node.weights().settings().lookahead() == 3);
                System.out.printf("[dashboard] knob change reached the running node in %.1f ms%n",
                    (System.nanoTime() - sent) / 1e6);
                await("the node's reports to show look-ahead 3", 10_000, () ->
                {
                    try
                    {
                        final JsonNode n = node(series(port), "n2");
                        return last(n, "lookahead") == 3 && n.get("settings_generation").asLong() == 1;
                    }
                    catch (final Exception ex)
                    {
                        throw new RuntimeException(ex);
                    }
                });
                final JsonNode events = series(port).get("events");
                System.out.printf("[dashboard] from the service taking the change to the node applying it: %d ms%n",
                    node.reporter().appliedAtMillis() - events.get(0).get("atMillis").asLong());
                assertEquals(1, events.size());
                assertEquals("adaptive", events.get(0).get("from").asText());

                // the service's own knobs: memory budget and eviction policy of its memory tier
                final HttpResponse<String> fifo = http(port, "POST", "/v1/dashboard/settings",
                    "{\"eviction_policy\": \"fifo\"}", TOKEN);
                assertEquals(400, fifo.statusCode());
                assertEquals("invalid eviction_policy=\"fifo\" (lru, lfu or cost)",
                    JSON.readTree(fifo.body()).get("error").asText());
                final HttpResponse<String> small = http(port, "POST", "/v1/dashboard/settings",
                    "{\"memory_budget_bytes\": 1000}", TOKEN);
                assertEquals(400, small.statusCode());
                assertTrue(JSON.readTree(small.body()).get("error").asText().startsWith("invalid memory_budget_bytes=1000"));
                final HttpResponse<String> tiers = http(port, "POST", "/v1/dashboard/settings",
                    "{\"memory_budget_bytes\": 134217728, \"eviction_policy\": \"lru\"}", TOKEN);
                assertEquals(200, tiers.statusCode(), tiers.body());
                assertEquals(2, JSON.readTree(tiers.body()).get("changed").size());
                assertEquals(134217728.0, prometheus(http(port, "GET", "/metrics", null, null).body())
                    .get("strata_tier_memory_budget_bytes{}"), 0.0, "the memory tier's budget changed");
                final JsonNode knobs = JSON.readTree(http(port, "GET", "/v1/dashboard/settings", null, null).body());
                assertEquals("lru", knobs.get("settings").get("eviction_policy").asText());
                assertEquals(3, knobs.get("events").size());
                assertEquals(1, knobs.get("settings").get("generation").asInt(), "service knobs are not node settings");
            }
        }
    }

    @Test
    void shouldReplayARecordedTraceToItsRecordedHitsAndMisses() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)))
        {
            upload(service);
            final int port = service.adminPort();
            try (ComputeNode node = ComputeNode.launch(new ComputeNode.Context().paramServer("localhost:" + port)
                .token(TOKEN).model("small").nodeName("n3").reportIntervalMillis(0)
                .options(StreamingWeightSource.Options.defaults(1L << 30).withMode(BlockChannel.Mode.UDP))))
            {
                final StreamingWeightSource weights = node.weights();
                weights.recordTrace(16);
                final LayerTrace.Settings sizes = weights.layerTrace(1).settings();
                final long layer = sizes.layerBytes()[0];
                // room for the globals and two and a half layers: every token evicts and prefetches
                final long budget = sizes.globalsBytes() + 2 * layer + layer / 2;
                // demand fetching only: the budget forces misses
                weights.apply(new PrefetchSettings(1, PrefetchSettings.Kind.NONE, budget));
                weights.recordTrace(1 << 20);
                final long demandBefore = node.stats().report().demandFetches();
                StreamingGenerationTest.generate(weights, PROMPT, 24, t -> true);
                final LayerTrace demandOnly = weights.layerTrace(1_000_000_000L);
                final TraceReplay.Result demandRecorded = TraceReplay.recorded(demandOnly);
                assertEquals(node.stats().report().demandFetches() - demandBefore, demandRecorded.misses(),
                    "the trace's misses are the node's demand fetches");
                assertTrue(demandRecorded.misses() > 4 && demandRecorded.hits() > 4, "hits and misses: " + demandRecorded);
                final TraceReplay.Result demandReplayed = TraceReplay.replay(demandOnly, demandOnly.settings());
                assertEquals(demandRecorded.accesses(), demandReplayed.accesses());
                assertEquals(demandRecorded.hits(), demandReplayed.hits());
                assertEquals(demandRecorded.misses(), demandReplayed.misses());
                System.out.printf("[dashboard] replay, demand fetching: recorded %d hits / %d misses, replayed %d / %d%n",
                    demandRecorded.hits(), demandRecorded.misses(), demandReplayed.hits(), demandReplayed.misses());

                // prefetching one layer ahead into the same budget
                weights.apply(new PrefetchSettings(1, PrefetchSettings.Kind.LEARNED, budget));
                weights.recordTrace(1 << 20);
                StreamingGenerationTest.generate(weights, PROMPT, 24, t -> true);
                final LayerTrace trace = weights.layerTrace(node.stats().observedLinkBytesPerSecond());
                final TraceReplay.Result recorded = TraceReplay.recorded(trace);
                final TraceReplay.Result replayed = TraceReplay.replay(trace, trace.settings());
                System.out.printf("[dashboard] stall per token, recorded %.3f ms, estimated by the replay %.3f ms (link " +
                    "as observed: %.2f GB/s)%n", recorded.stallMillisPerToken(), replayed.stallMillisPerToken(),
                    trace.settings().linkBytesPerSecond() / 1e9);
                assertEquals(recorded.accesses(), replayed.accesses());
                assertEquals(recorded.hits(), replayed.hits(), "hits, recorded " + recorded + " replayed " + replayed);
                assertEquals(recorded.misses(), replayed.misses());
                System.out.printf("[dashboard] replay, look-ahead 1: recorded %d hits / %d misses, replayed %d / %d%n",
                    recorded.hits(), recorded.misses(), replayed.hits(), replayed.misses());

                // the same through the admin API: upload the trace, replay it and a variant
                final Path file = data.resolve("n3.trace");
                trace.write(file);
                final HttpResponse<String> put = http(port, "PUT", "/v1/dashboard/traces/n3.trace",
                    Files.readString(file), TOKEN);
                assertEquals(200, put.statusCode(), put.body());
                final HttpResponse<String> r = http(port, "POST", "/v1/dashboard/replay",
                    "{\"trace\": \"n3.trace\", \"settings\": [{}, {\"prefetch\": false}]}", TOKEN);
                assertEquals(200, r.statusCode(), r.body());
                final JsonNode answer = JSON.readTree(r.body());
                assertEquals(recorded.hits(), answer.get("recorded").get("hits").asLong());
                assertEquals(recorded.hits(), answer.get("replays").get(0).get("hits").asLong());
                assertEquals(recorded.misses(), answer.get("replays").get(0).get("misses").asLong());
                assertNotEquals(recorded.misses(), answer.get("replays").get(1).get("misses").asLong(),
                    "without prefetch the same trace needs more demand fetches");
                assertEquals(401, http(port, "POST", "/v1/dashboard/replay", "{\"trace\": \"n3.trace\"}", null).statusCode());

                // and from the CLI: strata trace replay
                final Path demandFile = data.resolve("demand.trace");
                demandOnly.write(demandFile);
                final CliTest.Run cli = CliTest.run("trace", "replay", demandFile.toString(), "--settings",
                    "prefetch=false", "--settings", "lookahead=1,prefetch=true", "--json");
                assertEquals(0, cli.code(), cli.err());
                final JsonNode out = JSON.readTree(cli.out());
                assertEquals(demandRecorded.hits(), out.get("recorded").get("hits").asLong());
                assertEquals(demandRecorded.misses(), out.get("replays").get(0).get("misses").asLong(),
                    "the recorded settings (demand fetching) reproduce the recorded misses");
                assertTrue(out.get("replays").get(1).get("misses").asLong() < demandRecorded.misses(),
                    "prefetching one layer ahead would have saved demand fetches");
                final CliTest.Run bad = CliTest.run("trace", "replay", demandFile.toString(), "--settings", "lookahead=99");
                assertEquals(1, bad.code());
                assertTrue(bad.err().contains("invalid lookahead=99"), bad.err());
            }
        }
    }
}
