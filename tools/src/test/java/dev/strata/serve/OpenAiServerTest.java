package dev.strata.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.errors.NotFoundException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.completions.CompletionCreateParams;
import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code strata serve}'s API through real HTTP: the official OpenAI Java SDK, raw requests for every error path,
 * the golden stories260K completion, and 32 concurrent streams that each equal the same request alone.
 */
class OpenAiServerTest
{
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private GgufWeightSource weights;
    private ThreadPool pool;
    private Engine engine;
    private OpenAiServer server;
    private final HttpClient http = HttpClient.newHttpClient();

    private void start(final Path model, final String name, final String apiKey, final int context) throws Exception
    {
        weights = new GgufWeightSource(GgufFile.open(model), true);
        pool = new ThreadPool(2);
        final Tokenizer tokenizer = Tokenizer.fromGguf(weights.file().metadata());
        engine = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
            .modelVersion(name + "@1").kvMemory(64L << 20).maxContext(context));
        server = OpenAiServer.launch(new OpenAiServer.Context().port(0).apiKey(apiKey).maxBodyBytes(1 << 20)
            .catalog(new SingleModelCatalog(new ServedModel(name, engine, tokenizer,
                ChatTemplate.fromMetadata(weights.file().metadata()), 0), List.of())));
    }

    private void startSynthetic(final String apiKey) throws Exception
    {
        final Path model = dir.resolve("tiny.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=64,layers=2,heads=4,kv=2,ffn=96"), GgmlType.F32,
            null, 4);
        start(model, "tiny", apiKey, 256);
    }

    @AfterEach
    void stop() throws Exception
    {
        if (server != null)
        {
            server.close();
        }
        if (engine != null)
        {
            engine.close();
            pool.close();
            weights.close();
        }
    }

    private String url(final String path)
    {
        return "http://127.0.0.1:" + server.port() + path;
    }

    private HttpResponse<String> post(final String path, final String body, final String key) throws Exception
    {
        final HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url(path)))
            .POST(HttpRequest.BodyPublishers.ofString(body)).header("Content-Type", "application/json");
        if (key != null)
        {
            b.header("Authorization", "Bearer " + key);
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void shouldServeTheOfficialOpenAiJavaClient() throws Exception
    {
        startSynthetic("sk-test");
        final OpenAIClient client = OpenAIOkHttpClient.builder().baseUrl(url("/v1")).apiKey("sk-test").build();
        try
        {
            assertEquals(List.of("tiny"), client.models().list().data().stream().map(m -> m.id()).toList());
            final com.openai.models.completions.Completion c = client.completions().create(CompletionCreateParams
                .builder().model("tiny").prompt("Once upon a time").maxTokens(12).temperature(0.0).build());
            assertEquals(12, c.usage().orElseThrow().completionTokens());
            assertEquals("tiny", c.model());
            final String completionText = c.choices().get(0).text();
            // the same greedy request through the raw API gives the same text
            final JsonNode raw = JSON.readTree(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Once upon " +
                "a time\",\"max_tokens\":12,\"temperature\":0}", "sk-test").body());
            assertEquals(raw.at("/choices/0/text").asText(), completionText);

            final ChatCompletionCreateParams chat = ChatCompletionCreateParams.builder().model("tiny")
                .addUserMessage("Hello there").maxCompletionTokens(10).temperature(0.0).build();
            final ChatCompletion reply = client.chat().completions().create(chat);
            final String content = reply.choices().get(0).message().content().orElseThrow();
            assertEquals(10, reply.usage().orElseThrow().completionTokens());
            assertTrue(reply.usage().orElseThrow().promptTokens() > 3);
            final StringBuilder streamed = new StringBuilder();
            try (StreamResponse<ChatCompletionChunk> stream = client.chat().completions().createStreaming(chat))
            {
                stream.stream().forEach(chunk -> chunk.choices().forEach(choice ->
                    choice.delta().content().ifPresent(streamed::append)));
            }
            assertEquals(content, streamed.toString());
            assertThrows(NotFoundException.class, () -> client.completions().create(CompletionCreateParams.builder()
                .model("no-such-model").prompt("x").maxTokens(2).build()));
        }
        finally
        {
            client.close();
        }
    }

    @Test
    void shouldReturnTheGoldenStoriesCompletion() throws Exception
    {
        final String shared = System.getProperty("strata.shared.models");
        Assumptions.assumeTrue(shared != null && Files.isRegularFile(Path.of(shared, "stories260K.gguf")),
            "skipped: ../shared/models (stories260K.gguf) is absent");
        final Path golden = Path.of(shared, "golden-once-upon-a-time.json");
        final JsonNode g = JSON.readTree(golden.toFile());
        final int[] generated = new int[g.get("generated_tokens").size()];
        for (int i = 0; i < generated.length; i++)
        {
            generated[i] = g.get("generated_tokens").get(i).asInt();
        }
        start(Path.of(shared, "stories260K.gguf"), "stories260K", null, 512);
        final String expected = Tokenizer.fromGguf(weights.file().metadata()).decode(generated);
        final JsonNode r = JSON.readTree(post("/v1/completions", "{\"model\":\"stories260K\",\"prompt\":\"" +
            g.get("prompt").asText() + "\",\"max_tokens\":" + generated.length + ",\"temperature\":0}", null).body());
        assertEquals(expected, r.at("/choices/0/text").asText());
        assertEquals("length", r.at("/choices/0/finish_reason").asText());
        assertEquals(generated.length, r.at("/usage/completion_tokens").asInt());
    }

    @Test
    void shouldGiveEachOf32ConcurrentStreamsWhatItGetsAlone() throws Exception
    {
        startSynthetic(null);
        final List<String> prompts = new ArrayList<>();
        for (int i = 0; i < 32; i++)
        {
            prompts.add("request " + i + ": " + "abcdefghij".substring(0, 1 + i % 10));
        }
        final List<String> alone = new ArrayList<>();
        for (final String p : prompts)
        {
            alone.add(JSON.readTree(post("/v1/completions", body(p, false), null).body()).at("/choices/0/text")
                .asText());
        }
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor())
        {
            final List<Future<String>> results = new ArrayList<>();
            for (final String p : prompts)
            {
                results.add(clients.submit((Callable<String>)() -> streamedText(body(p, true))));
            }
            for (int i = 0; i < prompts.size(); i++)
            {
                assertEquals(alone.get(i), results.get(i).get(120, TimeUnit.SECONDS), "request " + i);
            }
        }
        assertTrue(engine.stats().steps() > 0);
    }

    private static String body(final String prompt, final boolean stream)
    {
        return "{\"model\":\"tiny\",\"prompt\":" + quote(prompt) + ",\"max_tokens\":24,\"temperature\":0,\"stream\":" +
            stream + "}";
    }

    private static String quote(final String s)
    {
        try
        {
            return JSON.writeValueAsString(s);
        }
        catch (final Exception e)
        {
            throw new IllegalStateException(e);
        }
    }

    private String streamedText(final String body) throws Exception
    {
        final HttpResponse<java.util.stream.Stream<String>> r = http.send(HttpRequest.newBuilder(URI.create(
            url("/v1/completions"))).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, r.statusCode());
        final StringBuilder text = new StringBuilder();
        final boolean[] done = {false};
        r.body().forEach(line ->
        {
            if (line.equals("data: [DONE]"))
            {
                done[0] = true;
            }
            else if (line.startsWith("data: "))
            {
                try
                {
                    text.append(JSON.readTree(line.substring(6)).at("/choices/0/text").asText());
                }
                catch (final Exception e)
                {
                    throw new IllegalStateException(e);
                }
            }
        });
        assertTrue(done[0], "no [DONE]");
        return text.toString();
    }

    @Test
    void shouldAnswerBadRequestsWithTheRightStatusAndKeepServing() throws Exception
    {
        startSynthetic("sk-right");
        // ignore_eos: without a seed the draws differ per request, and an end-of-generation token drawn early would
        // end it before 3 tokens (seen once in a full run)
        final String ok = "{\"model\":\"tiny\",\"prompt\":\"hello\",\"max_tokens\":3,\"ignore_eos\":true}";
        assertError(post("/v1/completions", ok, "sk-wrong"), 401, "invalid_api_key");
        assertError(post("/v1/completions", ok, null), 401, "invalid_api_key");
        assertError(post("/v1/completions", "{\"model\":\"tiny\",", "sk-right"), 400, null);
        assertError(post("/v1/completions", "[1,2]", "sk-right"), 400, null);
        assertError(post("/v1/completions", "{\"model\":\"nope\",\"prompt\":\"x\"}", "sk-right"), 404,
            "model_not_found");
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":0}", "sk-right"),
            400, null);
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":-5}", "sk-right"),
            400, null);
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":100000}",
            "sk-right"), 400, "context_length_exceeded");
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"" + "y".repeat(600) + "\"}",
            "sk-right"), 400, "context_length_exceeded");
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"temperature\":\"hot\"}",
            "sk-right"), 400, null);
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":{\"a\":1}}", "sk-right"), 400, null);
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":[1, 99999]}", "sk-right"), 400, null);
        assertError(post("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"x\",\"n\":2}", "sk-right"), 400, null);
        assertError(post("/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[]}", "sk-right"), 400, null);
        assertError(post("/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"wizard\"," +
            "\"content\":\"x\"}]}", "sk-right"), 400, null);
        final String big = "{\"model\":\"tiny\",\"prompt\":\"" + "z".repeat(20 << 20) + "\"}";
        // with Expect: 100-continue, as clients of large uploads send it: the 413 comes before the body is sent
        // (without it the server's early answer and close can race the client's writing of the 20 MB)
        assertError(http.send(HttpRequest.newBuilder(URI.create(url("/v1/completions"))).expectContinue(true)
            .header("Authorization", "Bearer sk-right").POST(HttpRequest.BodyPublishers.ofString(big)).build(),
            HttpResponse.BodyHandlers.ofString()), 413, "request_too_large");
        assertEquals(405, http.send(HttpRequest.newBuilder(URI.create(url("/v1/completions"))).GET()
            .header("Authorization", "Bearer sk-right").build(), HttpResponse.BodyHandlers.ofString()).statusCode());
        // still serving
        final HttpResponse<String> fine = post("/v1/completions", ok, "sk-right");
        assertEquals(200, fine.statusCode(), fine.body());
        assertEquals(3, JSON.readTree(fine.body()).at("/usage/completion_tokens").asInt());
        final String metrics = http.send(HttpRequest.newBuilder(URI.create(url("/metrics"))).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        assertTrue(metrics.contains("strata_serve_time_to_first_token_seconds_bucket"), metrics);
        assertTrue(metrics.contains("strata_serve_kv_blocks_used"), metrics);
    }

    private static void assertError(final HttpResponse<String> r, final int status, final String code)
        throws Exception
    {
        assertEquals(status, r.statusCode(), r.body());
        final JsonNode e = JSON.readTree(r.body()).get("error");
        assertTrue(e != null && e.get("message").isTextual() && e.get("type").isTextual() && e.has("param") &&
            e.has("code"), r.body());
        if (code != null)
        {
            assertEquals(code, e.get("code").asText(), r.body());
        }
    }

    @Test
    void shouldCancelAStreamWhoseClientGoesAwayAndFreeItsBlocks() throws Exception
    {
        startSynthetic(null);
        final String body = "{\"model\":\"tiny\",\"prompt\":\"go on\",\"max_tokens\":240,\"temperature\":0.9," +
            "\"stream\":true}";
        try (java.net.Socket socket = new java.net.Socket("127.0.0.1", server.port()))
        {
            socket.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: " +
                "application/json\r\nContent-Length: " + body.length() + "\r\n\r\n" + body)
                .getBytes(StandardCharsets.UTF_8));
            final InputStream in = socket.getInputStream();
            final String head = new String(in.readNBytes(300), StandardCharsets.UTF_8);
            assertTrue(head.startsWith("HTTP/1.1 200") && head.contains("data: "), head);
            // the client goes away mid-stream
        }
        awaitTrue(() -> engine.stats().running() == 0 && engine.stats().kvBlocksInUse() == 0,
            "the abandoned request ends and its blocks are freed");
        awaitTrue(() -> scrape().contains("finish_reason=\"cancelled\""), "the request is counted as cancelled");
        final String metrics = scrape();
        final java.util.regex.Matcher m = java.util.regex.Pattern.compile(
            "strata_serve_completion_tokens_total\\{version=\"tiny\"} ([0-9.]+)").matcher(metrics);
        assertTrue(m.find(), metrics);
        assertTrue(Double.parseDouble(m.group(1)) < 240, "cancelled after " + m.group(1) + " tokens");
    }

    private String scrape()
    {
        try
        {
            return http.send(HttpRequest.newBuilder(URI.create(url("/metrics"))).build(),
                HttpResponse.BodyHandlers.ofString()).body();
        }
        catch (final Exception e)
        {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void shouldServeTheJavaClientAndTheTerminalChat() throws Exception
    {
        startSynthetic("k1");
        final dev.strata.client.StrataClient client = dev.strata.client.StrataClient.builder(url("/v1")).apiKey("k1")
            .build();
        assertEquals(List.of("tiny"), client.models());
        final var options = new dev.strata.client.StrataClient.Options().maxTokens(9).temperature(0);
        final var completion = client.complete("tiny", "Once upon", options);
        assertEquals(9, completion.completionTokens());
        assertEquals("length", completion.finishReason());
        final List<dev.strata.client.StrataClient.Message> messages = List.of(
            dev.strata.client.StrataClient.Message.system("be brief"), dev.strata.client.StrataClient.Message.user("hi"));
        final var reply = client.chat("tiny", messages, options);
        final StringBuilder pieces = new StringBuilder();
        final var streamed = client.chatStream("tiny", messages, options, pieces::append,
            new dev.strata.client.StrataClient.Streaming());
        assertEquals(reply.text(), streamed.text());
        assertEquals(reply.text(), pieces.toString());
        assertEquals(9, streamed.completionTokens());
        final var e = assertThrows(dev.strata.client.StrataClient.ApiException.class,
            () -> client.chat("other", messages, options));
        assertEquals(404, e.status());
        assertEquals("model_not_found", e.code());
        final var wrongKey = dev.strata.client.StrataClient.builder(url("/v1")).apiKey("k2").build();
        assertEquals(401, assertThrows(dev.strata.client.StrataClient.ApiException.class, wrongKey::models).status());

        // strata chat, its input piped: two turns, the second sees the first in its history
        final java.io.InputStream stdin = System.in;
        final java.io.StringWriter out = new java.io.StringWriter();
        try
        {
            System.setIn(new java.io.ByteArrayInputStream("hi\n/reset\nhello again\n/exit\n".getBytes(
                StandardCharsets.UTF_8)));
            final int code = dev.strata.tools.Main.run(new java.io.PrintWriter(out, true),
                new java.io.PrintWriter(new java.io.StringWriter(), true), "chat", "--url", url("/v1"), "--api-key",
                "k1", "--temperature", "0", "-n", "9", "--system", "be brief");
            assertEquals(0, code, out.toString());
        }
        finally
        {
            System.setIn(stdin);
        }
        assertTrue(out.toString().contains("chatting with tiny"), out.toString());
        assertTrue(out.toString().contains(reply.text()), "the first reply equals the client's: " + out);
        assertTrue(out.toString().contains("(history cleared)"), out.toString());
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!condition.getAsBoolean())
        {
            assertTrue(System.nanoTime() < deadline, "timed out waiting: " + what);
            Thread.sleep(10);
        }
    }

    /**
     * {@code strata bench serve --json --detailed} against this server: every request reported in order with the
     * lengths asked for; per request, TTFT + (output - 1) x TPOT is its end-to-end time (TPOT's definition), and the
     * inter-token latencies fit inside it (they end at the last token, the request at the stream's end).
     */
    @Test
    void shouldReportEachRequestOfAServeBenchmark() throws Exception
    {
        startSynthetic(null);
        final java.io.StringWriter out = new java.io.StringWriter();
        final java.io.StringWriter err = new java.io.StringWriter();
        final long before = System.currentTimeMillis();
        final int code = dev.strata.tools.Main.run(new java.io.PrintWriter(out, true), new java.io.PrintWriter(err, true),
            "bench", "serve", "--url", url("/v1"), "--model", "tiny", "--num-prompts", "3", "--prompt-len", "8",
            "--output-len", "5", "--vocab", "300", "--warmup", "0", "--request-rate", "20", "--json", "--detailed");
        final long after = System.currentTimeMillis();
        assertEquals(0, code, err::toString);
        final String text = out.toString();
        final JsonNode root = JSON.readTree(text.substring(text.indexOf('{')));
        assertEquals(3, root.get("completed").asInt(), text);
        final JsonNode requests = root.get("requests");
        assertEquals(3, requests.size(), text);
        // the run's start on the wall clock (to line requests up with logs), and each request inside the run
        final long started = root.get("started_at_ms").asLong();
        assertTrue(started >= before - 1 && started <= after, started + " not in [" + before + ", " + after + "]");
        double lastDue = 0;
        for (final JsonNode r : requests)
        {
            assertTrue(r.get("ok").asBoolean(), r.toString());
            final double sent = r.get("sent_s").asDouble();
            // the arrival times grow (a rate of 20 a second spaces them), and no request goes out before its time
            final double due = r.get("due_s").asDouble();
            assertTrue(due > lastDue && sent >= due, r.toString());
            lastDue = due;
            assertTrue(sent >= 0 && sent + r.get("e2e_ms").asDouble() / 1000 <= root.get("duration_s").asDouble() + 1e-3,
                r.toString());
            assertEquals(5, r.get("output_len").asInt(), r.toString());
            final double ttft = r.get("ttft_ms").asDouble();
            final double e2e = r.get("e2e_ms").asDouble();
            assertEquals(e2e, ttft + 4 * r.get("tpot_ms").asDouble(), 1e-6, r.toString());
            final JsonNode itl = r.get("itl_ms");
            assertTrue(itl.size() <= 4, r.toString());
            double sum = 0;
            for (final JsonNode v : itl)
            {
                assertTrue(v.asDouble() >= 0, r.toString());
                sum += v.asDouble();
            }
            assertTrue(ttft > 0 && ttft + sum <= e2e + 1e-6, r.toString());
        }
        // the gaps by requests decoding at once are all the gaps the requests report
        int gaps = 0;
        for (final JsonNode row : root.get("decode_mix").get("itl_by_decoding"))
        {
            assertTrue(row.get("decoding").asInt() >= 1 && row.get("decoding").asInt() <= 3, row.toString());
            gaps += row.get("gaps").asInt();
        }
        int itls = 0;
        for (final JsonNode r : requests)
        {
            itls += r.get("itl_ms").size();
        }
        assertEquals(itls, gaps, text);
        // without --json there is nowhere to put them: refused before any request is sent, and said why
        final java.io.StringWriter err2 = new java.io.StringWriter();
        final int refused = dev.strata.tools.Main.run(new java.io.PrintWriter(new java.io.StringWriter(), true),
            new java.io.PrintWriter(err2, true), "bench", "serve", "--url", url("/v1"), "--model", "tiny",
            "--num-prompts", "3", "--prompt-len", "8", "--output-len", "5", "--vocab", "300", "--detailed");
        assertTrue(refused != 0, err2::toString);
        assertTrue(err2.toString().contains("--detailed needs --json"), err2::toString);
    }
}
