package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramserver.ParamService;
import dev.strata.serve.ModelCatalog;
import dev.strata.serve.OpenAiServer;
import dev.strata.serve.ParamCatalog;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The embedded stack of {@code strata serve}: a parameter service, versions imported into it, the catalog that
 * resolves names, labels, pins and the canary share per request, and the API on top.
 */
class ServeStackTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String TOKEN = "t0ken";

    @TempDir
    Path dir;

    private ParamService service;
    private ParamClient client;
    private ThreadPool pool;
    private ParamCatalog catalog;
    private OpenAiServer server;
    private final HttpClient http = HttpClient.newHttpClient();

    @BeforeEach
    void start() throws Exception
    {
        service = ParamService.launch(new ParamService.Context().dataDir(dir.resolve("data")).token(TOKEN));
        client = new ParamClient("127.0.0.1:" + service.adminPort(), TOKEN);
        final SyntheticModel.Shape shape = SyntheticModel.Shape.parse("dim=64,layers=2,heads=4,kv=2,ffn=96");
        final Path v1 = dir.resolve("v1.gguf");
        final Path v2 = dir.resolve("v2.gguf");
        SyntheticModel.write(v1, shape, GgmlType.F32, null, 1);
        SyntheticModel.write(v2, shape, GgmlType.F32, null, 2);
        final StringWriter log = new StringWriter();
        assertEquals("tiny@1", ServeCommand.importFile(client, v1, "tiny", new PrintWriter(log)));
        // the same file again: content-addressed, nothing new
        assertEquals("tiny@1", ServeCommand.importFile(client, v1, "tiny", new PrintWriter(log)));
        assertTrue(log.toString().contains("nothing sent"), log.toString());
        assertEquals("tiny@2", ServeCommand.importFile(client, v2, "tiny", new PrintWriter(log)));
        pool = new ThreadPool(2);
        catalog = new ParamCatalog(client, "test-node", StreamingWeightSource.Options.defaults(1L << 30),
            ctx -> ctx.pool(pool).kvMemory(16L << 20).maxContext(256), 0);
        server = OpenAiServer.launch(new OpenAiServer.Context().port(0).catalog(catalog));
    }

    @AfterEach
    void stop() throws Exception
    {
        server.close();
        catalog.close();
        pool.close();
        service.close();
    }

    private int resolve(final String model, final String pin, final String user)
    {
        try (ModelCatalog.Lease lease = catalog.acquire(model, pin, user))
        {
            return Integer.parseInt(lease.model().id().substring(lease.model().id().indexOf('@') + 1));
        }
    }

    @Test
    void shouldSendTheCanaryItsShareStickyPerUserAndHonourPins() throws Exception
    {
        assertEquals(1, resolve("tiny", null, null), "v1 is stable, no canary yet");
        client.canary("tiny", 2, 30);
        int canary = 0;
        for (int i = 0; i < 1000; i++)
        {
            canary += resolve("tiny", null, null) == 2 ? 1 : 0;
        }
        // binomial(1000, 0.3): mean 300, standard deviation 14.5; five deviations either side
        assertTrue(canary > 227 && canary < 373, "canary share " + canary + "/1000");
        // sticky per user, and about 30% of users on the canary
        int users = 0;
        for (int u = 0; u < 400; u++)
        {
            final Set<Integer> seen = new HashSet<>();
            for (int i = 0; i < 5; i++)
            {
                seen.add(resolve("tiny", null, "user-" + u));
            }
            assertEquals(1, seen.size(), "user-" + u + " saw " + seen);
            users += seen.contains(2) ? 1 : 0;
        }
        assertTrue(users > 80 && users < 160, users + " of 400 users on the canary");
        // labels and pins
        assertEquals(2, resolve("tiny:canary", null, null));
        assertEquals(1, resolve("tiny:stable", null, null));
        assertEquals(2, resolve("tiny@2", null, null));
        for (int i = 0; i < 20; i++)
        {
            assertEquals(1, resolve("tiny", "1", null));
            assertEquals(2, resolve("tiny", "tiny@2", null));
        }
        final HttpResponse<String> pinned = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" +
            server.port() + "/v1/completions")).header("X-Strata-Version", "2").POST(HttpRequest.BodyPublishers
            .ofString("{\"model\":\"tiny\",\"prompt\":\"hi\",\"max_tokens\":3}")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals("tiny@2", JSON.readTree(pinned.body()).get("model").asText(), pinned.body());
        final HttpResponse<String> unknown = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" +
            server.port() + "/v1/completions")).POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"tiny@9\"," +
            "\"prompt\":\"hi\"}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(404, unknown.statusCode(), unknown.body());
    }

    @Test
    void shouldFinishAStreamOnItsVersionThroughAPromoteAndKeepAServedVersionFromRemoval() throws Exception
    {
        // a long streamed request on v1 (stable)
        final HttpResponse<java.io.InputStream> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" +
            server.port() + "/v1/completions")).POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"tiny\"," +
            "\"prompt\":\"go\",\"max_tokens\":200,\"ignore_eos\":true,\"stream\":true}")).build(),
            HttpResponse.BodyHandlers.ofInputStream());
        final BufferedReader lines = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8));
        final String first = lines.readLine();
        assertTrue(first.startsWith("data: "), first);
        assertEquals("tiny@1", JSON.readTree(first.substring(6)).get("model").asText());
        // promote v2 while it streams: new requests go to v2 at once, this one stays on v1
        client.promote("tiny", 2);
        assertEquals(2, resolve("tiny", null, null));
        String line;
        int chunks = 0;
        while ((line = lines.readLine()) != null && !line.equals("data: [DONE]"))
        {
            if (line.startsWith("data: "))
            {
                final JsonNode n = JSON.readTree(line.substring(6));
                assertEquals("tiny@1", n.get("model").asText());
                chunks++;
            }
        }
        assertTrue(chunks > 10, "chunks " + chunks);
        // v1 is retired but still served (its engine holds a lease): it cannot be removed
        final ParamClient.ServiceException refused = assertThrows(ParamClient.ServiceException.class,
            () -> client.delete("tiny", 1));
        assertEquals(409, refused.status(), refused.getMessage());
        // rollback: new requests on v1 again
        client.rollback("tiny");
        assertEquals(1, resolve("tiny", null, null));
    }
}
