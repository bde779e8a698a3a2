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
        return send(request(prompt, maxTokens));
    }

    private JsonNode send(final ObjectNode b) throws Exception
    {
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

    /** Two versions of model m (label stable on the first) in a running parameter service, and a split deployment. */
    private record Deployment(String address, Process serve, Path log, int vocab)
    {
    }

    private Deployment deploy(final StrataProcesses processes, final String... serveArgs) throws Exception
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
        final java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("serve", "--param-server",
            address, "--token-file", processes.tokenFile().toString(), "--model", "m", "--prefill", "1", "--decode",
            "1", "--port", "0", "--kv-memory", "32M", "--max-prefill-tokens", "64"));
        args.addAll(java.util.List.of(serveArgs));
        final Process serve = processes.start(log, dir.resolve("aeron-serve"), args.toArray(String[]::new));
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
        return new Deployment(address, serve, log, vocab);
    }

    @Test
    void shouldFollowTheStableLabelWithNoRequestMixingTwoVersions() throws Exception
    {
        try (StrataProcesses processes = new StrataProcesses(dir, "follow-test-token"))
        {
            final Deployment d = deploy(processes);
            final Path log = d.log;
            final Process serve = d.serve;
            final String address = d.address;
            final int vocab = d.vocab;
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

    /**
     * {@code --switch replace}: on a promote, the serving set finishes its requests (a stream in flight ends with
     * version 1's text, whole) and stops before version 2's set starts; a request sent meanwhile waits and answers as
     * version 2. The router never lists nodes of two versions alive at once, nor more than one set.
     */
    @Test
    void shouldReplaceTheNodeSetInPlaceWhenAskedTo() throws Exception
    {
        try (StrataProcesses processes = new StrataProcesses(dir, "follow-test-token"))
        {
            final Deployment d = deploy(processes, "--switch", "replace");
            awaitServing(1, d.log);
            final int[] prompt = new Random(3).ints(40, 3, d.vocab).toArray();
            final int[] longPrompt = new Random(4).ints(30, 3, d.vocab).toArray();
            final String one = text(complete(prompt, 32));
            final String longOne = text(complete(longPrompt, 1500));

            final java.util.concurrent.atomic.AtomicInteger mostAlive = new java.util.concurrent.atomic.AtomicInteger();
            final java.util.Set<String> mixed = java.util.concurrent.ConcurrentHashMap.newKeySet();
            final java.util.concurrent.atomic.AtomicBoolean watching = new java.util.concurrent.atomic.AtomicBoolean(true);
            final CompletableFuture<Void> watcher = CompletableFuture.runAsync(() ->
            {
                while (watching.get())
                {
                    try
                    {
                        int alive = 0;
                        final java.util.Set<String> versions = new java.util.HashSet<>();
                        for (final JsonNode n : nodes().path("nodes"))
                        {
                            if (n.path("alive").asBoolean())
                            {
                                alive++;
                                versions.add(n.path("version").asText());
                            }
                        }
                        mostAlive.accumulateAndGet(alive, Math::max);
                        if (versions.size() > 1)
                        {
                            mixed.add(versions.toString());
                        }
                        Thread.sleep(20);
                    }
                    catch (final Exception e)
                    {
                        throw new RuntimeException(e);
                    }
                }
            });

            // a long request streams when the promote comes; the stream is read to its end on another thread
            final HttpResponse<java.util.stream.Stream<String>> r = http.send(HttpRequest.newBuilder(
                URI.create(base + "/v1/completions")).timeout(Duration.ofSeconds(180)).POST(HttpRequest.BodyPublishers
                .ofString(request(longPrompt, 1500).put("stream", true).toString())).build(),
                HttpResponse.BodyHandlers.ofLines());
            assertEquals(200, r.statusCode());
            final java.util.Iterator<String> lines = r.body().iterator();
            final StringBuilder streamed = new StringBuilder();
            while (streamed.isEmpty() && lines.hasNext())
            {
                streamed.append(chunkText(lines.next()));
            }
            final StrataProcesses.Run promoted = processes.cli(d.address, "model", "promote", "m@2");
            assertEquals(0, promoted.code(), promoted.err());
            final CompletableFuture<String> rest = CompletableFuture.supplyAsync(() ->
            {
                lines.forEachRemaining(line -> streamed.append(chunkText(line)));
                return streamed.toString();
            });

            // once version 1's nodes have stopped, a request waits for version 2's and answers as it
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!StrataProcesses.read(d.log).contains("m@1: nodes stopped"))
            {
                assertTrue(System.nanoTime() < deadline, StrataProcesses.read(d.log));
                Thread.sleep(20);
            }
            final CompletableFuture<JsonNode> waiting = CompletableFuture.supplyAsync(() ->
            {
                try
                {
                    return complete(prompt, 32);
                }
                catch (final Exception e)
                {
                    throw new RuntimeException(e);
                }
            });
            assertEquals(longOne, rest.get(60, TimeUnit.SECONDS), "the stream in flight ends with version 1's text");
            awaitServing(2, d.log);
            final String two = text(waiting.get(180, TimeUnit.SECONDS));
            assertNotEquals(one, two, "the request sent between the sets answers as version 2");
            assertEquals(two, text(complete(prompt, 32)), "and so does the next");
            watching.set(false);
            watcher.get(10, TimeUnit.SECONDS);
            assertTrue(mixed.isEmpty(), "nodes of two versions alive at once: " + mixed);
            assertTrue(mostAlive.get() <= 2, "more than one set alive: " + mostAlive.get());
            final String log = StrataProcesses.read(d.log);
            assertTrue(log.indexOf("m@1: nodes stopped") < log.indexOf("node prefill-1-v2: pid"),
                "version 1's nodes stopped before version 2's started:\n" + log);
            StrataProcesses.sigterm(d.serve);
        }
    }

    /**
     * {@code --switch replace} when the new version's nodes do not join in time (a deadline of 1 s, shorter than a
     * node's start): a set of the old version starts again, the request that waited meanwhile answers as the old
     * version, and the refused version is not tried again while the label stays on it.
     */
    @Test
    void shouldServeTheOldVersionAgainWhenTheNewOneDoesNotJoinInTime() throws Exception
    {
        try (StrataProcesses processes = new StrataProcesses(dir, "follow-test-token"))
        {
            final Deployment d = deploy(processes, "--switch", "replace", "--switch-deadline-s", "1");
            awaitServing(1, d.log);
            final int[] prompt = new Random(3).ints(40, 3, d.vocab).toArray();
            final String one = text(complete(prompt, 32));
            final StrataProcesses.Run promoted = processes.cli(d.address, "model", "promote", "m@2");
            assertEquals(0, promoted.code(), promoted.err());
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!StrataProcesses.read(d.log).contains("m@1: nodes stopped"))
            {
                assertTrue(System.nanoTime() < deadline, StrataProcesses.read(d.log));
                Thread.sleep(20);
            }
            assertEquals(one, text(complete(prompt, 32)), "the request sent between the sets runs on version 1 " +
                "again:\n" + StrataProcesses.read(d.log));
            awaitServing(1, d.log);
            final String log = StrataProcesses.read(d.log);
            assertTrue(log.contains("m@2: its nodes did not join within 1 s") && log.contains("serving m@1 again"),
                log);
            Thread.sleep(3_000);
            assertEquals(1, StrataProcesses.read(d.log).split("starting m@2's", -1).length - 1,
                "version 2 is not tried again while the label stays on it:\n" + StrataProcesses.read(d.log));
            assertEquals(2, nodes().path("nodes").size(), "only the serving set is listed: " + nodes());
            StrataProcesses.sigterm(d.serve);
        }
    }

    /**
     * A canary of the followed model runs on a node set of its own beside the stable one: with a weight of 50%, each
     * user's requests go to one version, the same every time, and both versions answer some users; {@code m@2}
     * reaches the canary by name. Another canary replaces it: the first canary's set stops and the new one's starts.
     * Promoting the canary moves every request to its set, which was running already (no node starts), and the
     * old stable set stops.
     */
    @Test
    void shouldRunACanaryOnItsOwnNodesAndAdoptThemWhenPromoted() throws Exception
    {
        try (StrataProcesses processes = new StrataProcesses(dir, "follow-test-token"))
        {
            final Deployment d = deploy(processes);
            awaitServing(1, d.log);
            final Path third = dir.resolve("m3.gguf");
            SyntheticModel.write(third, SyntheticModel.Shape.parse("dim=256,layers=4,heads=4,kv=2,ffn=512"),
                GgmlType.Q8_0, null, 33);
            final StrataProcesses.Run up = processes.cli(d.address, "model", "upload", third.toString(), "--name", "m");
            assertEquals(0, up.code(), up.err());
            final int[] prompt = new Random(3).ints(40, 3, d.vocab).toArray();
            final String one = text(complete(prompt, 32));

            StrataProcesses.Run canary = processes.cli(d.address, "model", "canary", "m@2", "--weight", "50");
            assertEquals(0, canary.code(), canary.err());
            awaitLog(d.log, "canary m@2: 50% of new requests");
            final String two = text(send(request(prompt, 32).put("model", "m@2")));
            assertNotEquals(one, two, "m@2 by name answers as version 2");
            final java.util.Map<String, String> byUser = new java.util.TreeMap<>();
            for (int u = 0; u < 24; u++)
            {
                final String user = "user-" + u;
                final String first = text(send(request(prompt, 32).put("user", user)));
                assertTrue(first.equals(one) || first.equals(two), user + " got neither version's text: " + first);
                assertEquals(first, text(send(request(prompt, 32).put("user", user))), user + " keeps its version");
                byUser.put(user, first.equals(one) ? "m@1" : "m@2");
            }
            assertTrue(byUser.containsValue("m@1") && byUser.containsValue("m@2"), "both versions answer: " + byUser);
            assertEquals(4, aliveNodes(), "the stable set and the canary's: " + nodes());

            // another canary: version 2's set finishes and stops, version 3's starts
            canary = processes.cli(d.address, "model", "canary", "m@3", "--weight", "50");
            assertEquals(0, canary.code(), canary.err());
            awaitLog(d.log, "canary m@2: nodes stopped");
            awaitLog(d.log, "canary m@3: 50% of new requests");
            final String three = text(send(request(prompt, 32).put("model", "m@3")));
            assertNotEquals(one, three);
            assertNotEquals(two, three);
            for (final java.util.Map.Entry<String, String> e : byUser.entrySet())
            {
                // the share is the same hash of the user, so version 2's users are version 3's now
                assertEquals(e.getValue().equals("m@1") ? one : three, text(send(request(prompt, 32).put("user",
                    e.getKey()))), e.getKey());
            }

            // promote the canary: its running set takes every request, version 1's stops
            final StrataProcesses.Run promoted = processes.cli(d.address, "model", "promote", "m@3");
            assertEquals(0, promoted.code(), promoted.err());
            awaitLog(d.log, "m@1: nodes stopped");
            awaitServing(3, d.log);
            for (final String user : byUser.keySet())
            {
                assertEquals(three, text(send(request(prompt, 32).put("user", user))), user);
            }
            final String log = StrataProcesses.read(d.log);
            assertTrue(log.contains("serving m@3 (the canary, promoted)"), log);
            assertEquals(1, log.split("node prefill-1-v3: pid", -1).length - 1, "no set started for the promote:\n" +
                log);
            StrataProcesses.sigterm(d.serve);
        }
    }

    private int aliveNodes() throws Exception
    {
        int alive = 0;
        for (final JsonNode n : nodes().path("nodes"))
        {
            alive += n.path("alive").asBoolean() ? 1 : 0;
        }
        return alive;
    }

    private static void awaitLog(final Path log, final String line) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!StrataProcesses.read(log).contains(line))
        {
            assertTrue(System.nanoTime() < deadline, "no '" + line + "' in:\n" + StrataProcesses.read(log));
            Thread.sleep(50);
        }
    }

    private static ObjectNode request(final int[] prompt, final int maxTokens)
    {
        final ObjectNode b = JSON.createObjectNode().put("model", "m").put("max_tokens", maxTokens)
            .put("temperature", 0).put("ignore_eos", true);
        final var p = b.putArray("prompt");
        for (final int t : prompt)
        {
            p.add(t);
        }
        return b;
    }

    /** The text of one server-sent event line of a streamed completion (empty for others). */
    private static String chunkText(final String line)
    {
        if (!line.startsWith("data: ") || line.equals("data: [DONE]"))
        {
            return "";
        }
        try
        {
            return JSON.readTree(line.substring(6)).path("choices").path(0).path("text").asText();
        }
        catch (final java.io.IOException e)
        {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
