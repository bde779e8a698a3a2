package dev.strata.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.tools.Main;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@code strata serve --prefill 1 --decode 1} as real processes: the router (with the embedded parameter service the
 * model is imported into) and two {@code strata node} children that stream the weights from it.
 * A decode node killed with SIGKILL in the middle of a streamed request: the stream goes on with the text of the
 * uninterrupted run, no gap and no repeat; a prefill node killed during a long prefill: the request completes the
 * same; a killed node is started again, rejoins and takes work.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SplitServeProcessTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern SERVING = Pattern.compile("serving \\S+ at http://127\\.0\\.0\\.1:(\\d+)/v1");

    @TempDir
    static Path dir;

    private static Process server;
    private static Path log;
    private static String base;
    private static HttpClient http;
    private static int vocab;

    @BeforeAll
    static void start() throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        // big enough that a token takes milliseconds: a kill lands in the middle of a stream
        vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse(
            "dim=384,layers=6,heads=6,kv=3,ffn=1024,context=2048"), GgmlType.Q8_0, null, 9);
        log = dir.resolve("serve.log");
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow());
        command.addAll(ParamServerProcessTest.stackJvmFlags());
        command.add("-Xmx512m");
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "serve", "--model",
            model.toString(), "--data-dir", dir.resolve("data").toString(), "--prefill", "1", "--decode", "1",
            "--port", "0", "--kv-memory", "64M",
            "--node-timeout-ms", "1000", "--max-prefill-tokens", "64"));
        server = new ProcessBuilder(command).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (base == null)
        {
            final Matcher m = SERVING.matcher(Files.exists(log) ? Files.readString(log) : "");
            if (m.find())
            {
                base = "http://127.0.0.1:" + m.group(1);
            }
            else if (!server.isAlive())
            {
                fail("strata serve exited with " + server.exitValue() + ":\n" + Files.readString(log));
            }
            else if (System.nanoTime() > deadline)
            {
                fail("strata serve did not start:\n" + Files.readString(log));
            }
            Thread.sleep(100);
        }
        http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    @AfterAll
    static void stop() throws Exception
    {
        if (server != null)
        {
            server.destroy(); // SIGTERM: the router stops its nodes
            if (!server.waitFor(30, TimeUnit.SECONDS))
            {
                server.destroyForcibly();
            }
            // no node may outlive the router
            for (final ProcessHandle child : server.descendants().toList())
            {
                child.destroyForcibly();
            }
        }
    }

    /** The router's and the supervisor's lines of the log (moves, exits, joins), for failure messages. */
    private static String routerLines()
    {
        try
        {
            return String.join("\n", Files.readAllLines(log).stream().filter(l -> l.contains("moves") ||
                l.contains("rotation") || l.contains("joined") || l.contains("exited") || l.contains("KV")).toList());
        }
        catch (final IOException e)
        {
            return e.toString();
        }
    }

    private static ObjectNode body(final int[] prompt, final int maxTokens, final boolean stream)
    {
        final ObjectNode b = JSON.createObjectNode().put("model", "m").put("max_tokens", maxTokens)
            .put("temperature", 0).put("ignore_eos", true).put("stream", stream);
        final var p = b.putArray("prompt");
        for (final int t : prompt)
        {
            p.add(t);
        }
        return b;
    }

    private static JsonNode post(final ObjectNode body) throws Exception
    {
        final HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .timeout(Duration.ofSeconds(180)).POST(HttpRequest.BodyPublishers.ofString(body.toString())).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    private static JsonNode nodes() throws Exception
    {
        final HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/nodes")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    private static JsonNode node(final String role) throws Exception
    {
        for (final JsonNode n : nodes().path("nodes"))
        {
            if (n.path("role").asText().equals(role))
            {
                return n;
            }
        }
        fail("no " + role + " node: " + nodes());
        return null;
    }

    private static void kill(final long pid) throws Exception
    {
        final ProcessHandle p = ProcessHandle.of(pid).orElseThrow(() -> new AssertionError("no process " + pid));
        assertTrue(p.destroyForcibly(), "SIGKILL sent");
        p.onExit().get(30, TimeUnit.SECONDS);
    }

    /** Waits until the role's node is in rotation with a process other than {@code oldPid}. */
    private static JsonNode awaitRejoined(final String role, final long oldPid) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (true)
        {
            final JsonNode n = node(role);
            if (n.path("alive").asBoolean() && n.path("pid").asLong() != oldPid)
            {
                return n;
            }
            assertTrue(System.nanoTime() < deadline, "the " + role + " node did not rejoin: " + nodes() + "\n" +
                Files.readString(log));
            Thread.sleep(100);
        }
    }

    @Test
    @Order(0)
    void shouldPinTheRouterToThePrefillNodesCpusWhereTheNodesArePinned() throws Exception
    {
        final String out = Files.readString(log);
        final Matcher prefill = Pattern.compile("node prefill-1: pid (\\d+), CPUs (\\S+)").matcher(out);
        final Matcher decode = Pattern.compile("node decode-2: pid (\\d+), CPUs (\\S+)").matcher(out);
        org.junit.jupiter.api.Assumptions.assumeTrue(prefill.find() && decode.find(),
            "nodes not pinned here (no taskset, or fewer CPUs than nodes):\n" + out);
        // what the kernel says of each process, not what the launcher printed
        try (Stream<Path> tasks = Files.list(Path.of("/proc/" + server.pid() + "/task")))
        {
            for (final Path task : tasks.toList())
            {
                assertEquals(prefill.group(2), cpusAllowed(task), "every thread of the router process (" + task +
                    ") runs on the prefill node's CPUs");
            }
        }
        assertEquals(prefill.group(2), cpusAllowed(Long.parseLong(prefill.group(1))));
        assertEquals(decode.group(2), cpusAllowed(Long.parseLong(decode.group(1))));
        assertNotEquals(cpusAllowed(server.pid()), cpusAllowed(Long.parseLong(decode.group(1))),
            "nothing of the router on the decode node's CPUs");
    }

    /** Cpus_allowed_list of a process's main thread. */
    private static String cpusAllowed(final long pid) throws IOException
    {
        return cpusAllowed(Path.of("/proc/" + pid));
    }

    private static String cpusAllowed(final Path procDir) throws IOException
    {
        for (final String line : Files.readAllLines(procDir.resolve("status")))
        {
            if (line.startsWith("Cpus_allowed_list:"))
            {
                return line.substring(line.indexOf(':') + 1).strip();
            }
        }
        throw new IllegalStateException("no Cpus_allowed_list in " + procDir);
    }

    @Test
    @Order(1)
    void shouldContinueAStreamWithNoGapOrRepeatWhenItsDecodeNodeIsKilled() throws Exception
    {
        final int[] prompt = new Random(1).ints(40, 3, vocab).toArray();
        final String expected = post(body(prompt, 300, false)).path("choices").get(0).path("text").asText();
        final long decodePid = node("decode").path("pid").asLong();
        final long failoversBefore = nodes().path("failovers").asLong();

        final HttpResponse<Stream<String>> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .timeout(Duration.ofSeconds(180)).POST(HttpRequest.BodyPublishers.ofString(body(prompt, 300, true)
                .set("stream_options", JSON.createObjectNode().put("include_usage", true)).toString())).build(),
            HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, r.statusCode());
        final StringBuilder streamed = new StringBuilder();
        int chunks = 0;
        int completionTokens = -1;
        String beforeKill = null;
        boolean killed = false;
        boolean done = false;
        final Iterator<String> lines = r.body().iterator();
        while (lines.hasNext())
        {
            final String line = lines.next();
            if (!line.startsWith("data: "))
            {
                continue;
            }
            if (line.equals("data: [DONE]"))
            {
                done = true;
                break;
            }
            final JsonNode chunk = JSON.readTree(line.substring(6));
            if (chunk.path("usage").has("completion_tokens"))
            {
                completionTokens = chunk.path("usage").path("completion_tokens").asInt();
            }
            if (chunk.path("choices").isEmpty())
            {
                continue;
            }
            streamed.append(chunk.path("choices").get(0).path("text").asText());
            if (++chunks == 20)
            {
                beforeKill = streamed.toString();
                kill(decodePid);
                killed = true;
            }
        }
        assertTrue(killed && done, "killed mid-stream (" + chunks + " chunks) and the stream ended");
        // no gap and no repeat: the stream holds what was sent before the kill, then exactly the tokens still owed
        assertTrue(streamed.toString().startsWith(beforeKill), "the text before the kill is kept as it was");
        assertEquals(300, completionTokens, "300 tokens in all, none lost or repeated across the move");
        assertTrue(expected.startsWith(beforeKill), "before the kill the stream followed the uninterrupted run");
        // and the text after the move is the uninterrupted run's: the streamed tokens prefilled again on a fresh node
        // get the bits their decode steps gave them (batch-invariant kernels and attention, and JIT-independent
        // exp and lane sums: see JitDeterminismProcessTest)
        assertEquals(expected, streamed.toString(), "the text across the move equals the uninterrupted run's");
        assertTrue(nodes().path("failovers").asLong() > failoversBefore, "counted as a failover: " + nodes());

        // the supervisor starts the node again; it rejoins and takes work
        final JsonNode rejoined = awaitRejoined("decode", decodePid);
        final long requestsBefore = rejoined.path("requests").asLong();
        final JsonNode after = post(body(prompt, 300, false));
        assertEquals(300, after.path("usage").path("completion_tokens").asInt(), "a whole answer after the rejoin");
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (node("decode").path("requests").asLong() <= requestsBefore) // reported with its next heartbeat
        {
            assertTrue(System.nanoTime() < deadline, "the restarted node took no work: " + nodes());
            Thread.sleep(50);
        }
    }

    @Test
    @Order(2)
    void shouldCompleteARequestWhosePrefillNodeIsKilledMidPrefill() throws Exception
    {
        // the interrupted run first: a reference run before it would leave the prompt in the prefix caches
        final int[] prompt = new Random(2).ints(1200, 3, vocab).toArray();
        final long prefillPid = node("prefill").path("pid").asLong();
        final CompletableFuture<JsonNode> answer = CompletableFuture.supplyAsync(() ->
        {
            try
            {
                return post(body(prompt, 24, false));
            }
            catch (final Exception e)
            {
                throw new RuntimeException(e);
            }
        });
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (node("prefill").path("queueTokens").asLong() == 0)
        {
            assertTrue(!answer.isDone() && System.nanoTime() < deadline,
                "the prefill node never showed the prompt in its queue");
            Thread.sleep(5);
        }
        kill(prefillPid);
        final JsonNode a = answer.get(180, TimeUnit.SECONDS);
        // the request completed elsewhere with every token, and with the text of a second, uninterrupted run
        assertEquals(24, a.path("usage").path("completion_tokens").asInt(), "the moved request completed");
        final String expected = post(body(prompt, 24, false)).path("choices").get(0).path("text").asText();
        assertEquals(expected, a.path("choices").get(0).path("text").asText(),
            "the text of the moved request equals an uninterrupted run's");
        assertNotEquals(prefillPid, awaitRejoined("prefill", prefillPid).path("pid").asLong());
    }
}
