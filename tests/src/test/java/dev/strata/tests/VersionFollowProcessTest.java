package dev.strata.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.synth.SyntheticModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A split deployment ({@code strata serve --model NAME --prefill 1 --decode 1} over a running {@code strata
 * param-server}, all real processes) that follows its model's stable label: {@code strata model promote} of another
 * version moves it there (new requests answer as that version; one sent right after the promote, while the new
 * nodes start, has the old version's text, whole), and {@code strata model rollback} brings the old answers back. A
 * request streaming across the switch itself is {@code ClusterRouterTest}'s case.
 */
class VersionFollowProcessTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern SERVING = Pattern.compile("serving \\S+ at http://127\\.0\\.0\\.1:(\\d+)/v1");

    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private String base;

    private JsonNode complete(final int[] prompt, final int maxTokens) throws Exception
    {
        final ObjectNode b = JSON.createObjectNode().put("model", "m").put("max_tokens", maxTokens)
            .put("temperature", 0).put("ignore_eos", true);
        final var p = b.putArray("prompt");
        for (final int t : prompt)
        {
            p.add(t);
        }
        final HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .timeout(Duration.ofSeconds(180)).POST(HttpRequest.BodyPublishers.ofString(b.toString())).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    private static String text(final JsonNode completion)
    {
        return completion.path("choices").get(0).path("text").asText();
    }

    private JsonNode nodes() throws Exception
    {
        final HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/nodes")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    /** Waits until new requests go to version {@code number} and only its nodes are in rotation. */
    private void awaitServing(final int number, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
        while (true)
        {
            final JsonNode v = nodes();
            boolean only = v.path("version").asText().startsWith("m@" + number + ":");
            int alive = 0;
            for (final JsonNode n : v.path("nodes"))
            {
                if (n.path("alive").asBoolean())
                {
                    alive++;
                    only &= n.path("version").asText().startsWith("m@" + number + ":");
                }
            }
            if (only && alive == 2)
            {
                return;
            }
            assertTrue(System.nanoTime() < deadline, "not serving version " + number + " alone: " + v + "\n" +
                StrataProcesses.read(log));
            Thread.sleep(100);
        }
    }

    @Test
    void shouldFollowTheStableLabelWithNoRequestMixingTwoVersions() throws Exception
    {
        try (StrataProcesses processes = new StrataProcesses(dir, "follow-test-token"))
        {
            // two versions of one model: the same tokenizer (the built-in vocabulary), other weights
            final SyntheticModel.Shape shape = SyntheticModel.Shape.parse("dim=256,layers=4,heads=4,kv=2,ffn=512");
            final Path first = dir.resolve("m1.gguf");
            final Path second = dir.resolve("m2.gguf");
            final int vocab = SyntheticModel.write(first, shape, GgmlType.Q8_0, null, 31);
            SyntheticModel.write(second, shape, GgmlType.Q8_0, null, 32);
            final StrataProcesses.Server service = processes.startServer(dir.resolve("data"), dir.resolve("ps.log"),
                dir.resolve("aeron-ps"));
            final String address = service.address();
            StrataProcesses.Run up = processes.cli(address, "model", "upload", first.toString(), "--name", "m",
                "--label", "stable");
            assertEquals(0, up.code(), up.err());
            up = processes.cli(address, "model", "upload", second.toString(), "--name", "m");
            assertEquals(0, up.code(), up.err());

            final Path log = dir.resolve("serve.log");
            final Process serve = processes.start(log, dir.resolve("aeron-serve"), "serve", "--param-server", address,
                "--token-file", processes.tokenFile().toString(), "--model", "m", "--prefill", "1", "--decode", "1",
                "--port", "0", "--kv-memory", "32M", "--max-prefill-tokens", "64");
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
            while (base == null)
            {
                final Matcher m = SERVING.matcher(StrataProcesses.read(log));
                if (m.find())
                {
                    base = "http://127.0.0.1:" + m.group(1);
                }
                else if (!serve.isAlive() || System.nanoTime() > deadline)
                {
                    fail("strata serve did not start:\n" + StrataProcesses.read(log));
                }
                Thread.sleep(100);
            }
            awaitServing(1, log);
            final int[] prompt = new Random(3).ints(40, 3, vocab).toArray();
            final int[] longPrompt = new Random(4).ints(30, 3, vocab).toArray();
            final String one = text(complete(prompt, 32));
            final String longOne = text(complete(longPrompt, 1500));

            // promote version 2; a long request sent right after it arrives under version 1, and ends so
            StrataProcesses.Run promoted = processes.cli(address, "model", "promote", "m@2");
            assertEquals(0, promoted.code(), promoted.err());
            final CompletableFuture<JsonNode> across = CompletableFuture.supplyAsync(() ->
            {
                try
                {
                    return complete(longPrompt, 1500);
                }
                catch (final Exception e)
                {
                    throw new RuntimeException(e);
                }
            });
            awaitServing(2, log);
            final String two = text(complete(prompt, 32));
            assertNotEquals(one, two, "version 2 answers as itself");
            assertEquals(longOne, text(across.get(180, TimeUnit.SECONDS)),
                "the request sent before the move has version 1's text, whole");
            assertEquals(two, text(complete(prompt, 32)), "and again");

            // rollback: version 1 again, on a fresh node set
            final StrataProcesses.Run back = processes.cli(address, "model", "rollback", "m");
            assertEquals(0, back.code(), back.err());
            awaitServing(1, log);
            assertEquals(one, text(complete(prompt, 32)), "version 1's answer after the rollback");
            // each old set stopped and dropped from the router's list once its requests ended
            final long stopped = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!(StrataProcesses.read(log).contains("m@2: nodes stopped") &&
                StrataProcesses.read(log).contains("m@1: nodes stopped")))
            {
                assertTrue(System.nanoTime() < stopped, StrataProcesses.read(log));
                Thread.sleep(100);
            }
            assertEquals(2, nodes().path("nodes").size(), "only the serving set is listed: " + nodes());
            final java.util.List<ProcessHandle> nodes = serve.descendants().toList();
            StrataProcesses.sigterm(serve);
            for (final ProcessHandle n : nodes)
            {
                assertTrue(n.onExit().get(30, TimeUnit.SECONDS) != null && !n.isAlive(), "node " + n.pid() +
                    " stopped with the router");
            }
        }
    }
}
