package dev.strata.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.paramserver.ParamService;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The dashboard under the load: 16 simulated nodes reporting for 15 minutes (sent over Aeron in a few
 * seconds, with the nodes' timestamps). Checks what the JSON holds by parsing it, and reports (never asserts) how
 * long the service takes to answer the last 15 minutes.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class DashboardLoadTest
{
    static final int NODES = 16;
    static final int SECONDS = 900;
    static final int LAYERS = 22;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path data;

    /** Sends the 16 x 15 minutes and waits until the service has filed every report. */
    static void load(final ParamService service, final String token) throws Exception
    {
        final HttpClient http = HttpClient.newHttpClient();
        final ServiceInfo.Endpoints e = JSON.readValue(http.send(HttpRequest.newBuilder(URI.create("http://localhost:" +
            service.adminPort() + "/v1/dashboard/endpoints")).headers(token.isEmpty() ? new String[]{"Accept", "*/*"} :
            new String[]{"Authorization", "Bearer " + token}).build(), HttpResponse.BodyHandlers.ofString()).body(),
            ServiceInfo.Endpoints.class);
        try (SimulatedReporters sim = new SimulatedReporters(e.aeronDir(), e.ipcChannel(), e.streamId(), token))
        {
            final long start = System.nanoTime();
            final long sent = sim.backfill(NODES, LAYERS, SECONDS, System.currentTimeMillis());
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            long filed;
            while ((filed = reports(http, service.adminPort())) < sent)
            {
                if (System.nanoTime() > deadline)
                {
                    fail("the service filed " + filed + " of " + sent + " reports");
                }
                Thread.sleep(20);
            }
            System.out.printf("[dashboard-load] %d reports (%d nodes x %d s) sent and filed over Aeron IPC in %.2f s%n",
                sent, NODES, SECONDS, (System.nanoTime() - start) / 1e9);
        }
    }

    private static long reports(final HttpClient http, final int port) throws Exception
    {
        final String text = http.send(HttpRequest.newBuilder(URI.create("http://localhost:" + port + "/metrics")).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        for (final String line : text.split("\n"))
        {
            final String[] f = line.trim().split("\\s+");
            if (f.length == 2 && f[0].equals("strata_dashboard_reports"))
            {
                return (long)Double.parseDouble(f[1]);
            }
        }
        return 0;
    }

    @Test
    void shouldServeFifteenMinutesOfSixteenNodesAsJson() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data)))
        {
            load(service, "");
            final HttpClient http = HttpClient.newHttpClient();
            final HttpRequest request = HttpRequest.newBuilder(URI.create("http://localhost:" + service.adminPort() +
                "/v1/dashboard/series")).build();
            final double[] millis = new double[30];
            final double[] onService = new double[millis.length];
            HttpResponse<byte[]> last = null;
            for (int i = 0; i < millis.length; i++)
            {
                final long t0 = System.nanoTime();
                last = http.send(request, HttpResponse.BodyHandlers.ofByteArray());
                millis[i] = (System.nanoTime() - t0) / 1e6;
                assertEquals(200, last.statusCode());
                final String timing = last.headers().firstValue("Server-Timing").orElseThrow();
                assertTrue(timing.startsWith("json;dur="), timing);
                onService[i] = Double.parseDouble(timing.substring("json;dur=".length()));
            }
            final double[] onSvc = onService.clone();
            Arrays.sort(onSvc);
            System.out.printf("[dashboard-load] building the JSON on the service: median %.1f ms, min %.1f ms, max %.1f " +
                "ms over %d requests (first %.1f ms)%n", onSvc[onSvc.length / 2], onSvc[0],
                onSvc[onSvc.length - 1], onSvc.length, onService[0]);
            final JsonNode s = JSON.readTree(last.body());
            int simulated = 0;
            for (final JsonNode n : s.get("nodes"))
            {
                if (n.get("node").asText().startsWith("sim-"))
                {
                    simulated++;
                    assertEquals(SECONDS, n.get("t").size(), "15 minutes at 1 s for " + n.get("node"));
                    final JsonNode tokens = n.get("fields").get("tokens_per_s");
                    final int node = Integer.parseInt(n.get("node").asText().substring(4));
                    // the simulated node made 10 + n tokens a second
                    assertEquals(10 + node, tokens.get(tokens.size() - 1).asDouble(), 1e-6);
                    assertEquals(1 + node % 4, n.get("fields").get("lookahead").get(SECONDS - 1).asInt());
                }
            }
            assertEquals(NODES, simulated);
            final JsonNode heat = s.get("heat").get(0);
            assertEquals("sim@1", heat.get("version").asText());
            // the heat map covers the 15 minutes up to now: the oldest second may have left it since the backfill
            assertEquals(heat.get("t").size(), heat.get("counts").size());
            assertTrue(heat.get("t").size() >= SECONDS - 10, "heat map seconds: " + heat.get("t").size());
            final JsonNode row = heat.get("counts").get(heat.get("counts").size() - 1);
            assertEquals(LAYERS, row.size());
            long expected = 0;
            for (int n = 0; n < NODES; n++)
            {
                expected += 10 + n + (0 * 7 + SECONDS - 1) % 13; // layer 0 of the last second, summed over nodes
            }
            assertEquals(expected, row.get(0).asLong());
            final double[] sorted = millis.clone();
            Arrays.sort(sorted);
            System.out.printf("[dashboard-load] GET /v1/dashboard/series, 15 min x %d nodes (%d KiB): median %.1f ms, " +
                "max %.1f ms over %d requests (first %.1f ms)%n", NODES, last.body().length / 1024, sorted[sorted.length / 2],
                sorted[sorted.length - 1], millis.length, millis[0]);
            final String metrics = http.send(HttpRequest.newBuilder(URI.create("http://localhost:" + service.adminPort() +
                "/metrics")).build(), HttpResponse.BodyHandlers.ofString()).body();
            double count = 0;
            double sum = 0;
            double max = 0;
            for (final String line : metrics.split("\n"))
            {
                final String[] f = line.trim().split("\\s+");
                if (f.length == 2)
                {
                    switch (f[0])
                    {
                        case "strata_dashboard_series_seconds_count" -> count = Double.parseDouble(f[1]);
                        case "strata_dashboard_series_seconds_sum" -> sum = Double.parseDouble(f[1]);
                        case "strata_dashboard_series_seconds_max" -> max = Double.parseDouble(f[1]);
                        default -> { }
                    }
                }
            }
            assertEquals(millis.length, (long)count, "every request was timed on the service");
            System.out.printf("[dashboard-load] on the service (building the JSON): mean %.1f ms, max %.1f ms%n",
                1e3 * sum / count, 1e3 * max);
        }
    }
}
