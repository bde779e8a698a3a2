package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.Callable;

/** {@code strata nodes}: the compute nodes of a router, their roles, load and KV transfers. */
@Command(name = "nodes", description = "List a router's compute nodes: role, process, queue, KV use and transfers.")
final class NodesCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = "--router", defaultValue = "http://127.0.0.1:8080", description = "The router's API (default: " +
        "${DEFAULT-VALUE}).")
    String url;

    @Option(names = "--json", description = "Print the router's JSON.")
    boolean json;

    @Override
    public Integer call() throws Exception
    {
        final HttpResponse<String> r = http(url, "/v1/nodes", null);
        final PrintWriter out = spec.commandLine().getOut();
        if (r.statusCode() != 200)
        {
            spec.commandLine().getErr().println("error: " + message(r.body()));
            return 1;
        }
        if (json)
        {
            out.println(r.body());
            return 0;
        }
        final JsonNode v = new ObjectMapper().readTree(r.body());
        out.printf("%-22s %-8s %-8s %8s %-5s %10s %7s %7s %12s %12s %9s %7s%n", "NODE", "ROLE", "VERSION", "PID", "UP",
            "QUEUE_TOK", "RUNNING", "WAITING", "KV_FREE", "KV_SENT", "TRANSFERS", "RETRIES");
        for (final JsonNode n : v.path("nodes"))
        {
            out.printf("%-22s %-8s %-8s %8d %-5s %10d %7d %7d %6d/%-5d %12s %9d %7d%n", n.path("node").asText(),
                n.path("role").asText(), shortVersion(n.path("version").asText()), n.path("pid").asLong(),
                n.path("alive").asBoolean() ? "yes" : "no",
                n.path("queueTokens").asLong(), n.path("running").asInt(), n.path("waiting").asInt(),
                n.path("kvFree").asInt(), n.path("kvBlocks").asInt(), Sizes.format(n.path("kvBytesSent").asLong()),
                n.path("kvTransfers").asLong(), n.path("kvRetries").asLong());
        }
        out.printf("requests %d (split %d, whole %d), failovers %d, retries %d, role switches %d, KV moved %s at " +
            "%.2f GB/s%n", v.path("requests").asLong(), v.path("split").asLong(), v.path("whole").asLong(),
            v.path("failovers").asLong(), v.path("retries").asLong(), v.path("roleSwitches").asLong(),
            Sizes.format(v.path("kvBytes").asLong()), v.path("kvGBps").asDouble());
        final StringBuilder active = new StringBuilder();
        v.path("activeByVersion").fields().forEachRemaining(e -> active.append(active.isEmpty() ? "" : ", ")
            .append(shortVersion(e.getKey())).append(": ").append(e.getValue().asInt()));
        out.printf("new requests go to version %s; running by version: %s%n", shortVersion(v.path("version").asText()),
            active.isEmpty() ? "none" : active);
        return 0;
    }

    /** A served version as its number ({@code N:digest} from a parameter service), or its first 12 characters. */
    static String shortVersion(final String version)
    {
        final int colon = version.indexOf(':');
        return colon > 0 ? version.substring(0, colon) : version.length() > 12 ? version.substring(0, 12) : version;
    }

    static HttpResponse<String> http(final String url, final String path, final String postBody) throws Exception
    {
        final HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url.replaceAll("/+$", "") + path))
            .timeout(Duration.ofSeconds(10));
        final String key = System.getenv("STRATA_API_KEY");
        if (key != null)
        {
            b.header("Authorization", "Bearer " + key);
        }
        if (postBody != null)
        {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(postBody));
        }
        try (HttpClient client = HttpClient.newHttpClient())
        {
            return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
        }
    }

    static String message(final String body)
    {
        try
        {
            return new ObjectMapper().readTree(body).path("error").path("message").asText(body);
        }
        catch (final Exception e)
        {
            return body;
        }
    }
}
