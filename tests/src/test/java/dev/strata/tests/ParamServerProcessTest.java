package dev.strata.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.ParamClient;
import dev.strata.tools.Main;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The parameter service and the upload CLI as real processes, killed with SIGKILL: a killed service restarts
 * with its versions, labels and blocks; an upload killed half-way leaves an invisible version that re-running the
 * same upload resumes (sending only what is still missing) and commits.
 */
class ParamServerProcessTest
{
    private static final String TOKEN = "process-test-token";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern ADMIN = Pattern.compile("admin http://[^:]+:(\\d+)");

    @TempDir
    Path dir;

    private final List<Process> children = new ArrayList<>();

    @AfterEach
    void killChildren()
    {
        children.forEach(Process::destroyForcibly);
    }

    record Run(int code, String out, String err)
    {
    }

    private static Run cli(final String server, final String... args)
    {
        final List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("--server", server, "--token", TOKEN));
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final int code = Main.run(new PrintWriter(out), new PrintWriter(err), all.toArray(String[]::new));
        return new Run(code, out.toString(), err.toString());
    }

    /** A {@code strata ...} child JVM with the stack's flags, its output in {@code log}. */
    private Process strata(final Path log, final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow());
        command.addAll(stackJvmFlags());
        command.add("-Xmx512m");
        command.add("-Dstrata.aeron.dir=" + dir.resolve("aeron-" + children.size())); // not /dev/shm: killed
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(Main.class.getName());
        command.addAll(List.of(args));
        final Process p = new ProcessBuilder(command).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        children.add(p);
        return p;
    }

    /** Starts {@code strata param-server} and waits for its admin port. */
    private String startServer(final Path data, final Path log) throws Exception
    {
        final long before = Files.exists(log) ? Files.size(log) : 0;
        final Process p = strata(log, "param-server", "--data-dir", data.toString(), "--admin-port", "0",
            "--token", TOKEN);
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline)
        {
            if (Files.exists(log))
            {
                final String text = Files.readString(log).substring((int)before);
                final Matcher m = ADMIN.matcher(text);
                if (m.find())
                {
                    return "localhost:" + m.group(1);
                }
            }
            if (!p.isAlive())
            {
                fail("param-server exited with " + p.exitValue() + ":\n" + Files.readString(log));
            }
            Thread.sleep(50);
        }
        fail("param-server did not start:\n" + Files.readString(log));
        return null;
    }

    private static void sigkill(final Process p) throws InterruptedException
    {
        p.destroyForcibly(); // SIGKILL on Linux
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(137, p.exitValue(), "killed, not exited");
    }

    @Test
    void shouldSurviveSigkillOfTheServiceAndResumeAKilledUpload() throws Exception
    {
        final Path model = dir.resolve("model.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=512,layers=2,heads=8,kv=4,ffn=1536"),
            GgmlType.F32, null, 1);
        final Path other = dir.resolve("other.gguf");
        SyntheticModel.write(other, SyntheticModel.Shape.parse("dim=512,layers=2,heads=8,kv=4,ffn=1536"),
            GgmlType.F32, null, 2);
        final Path data = dir.resolve("data");
        final Path serverLog = dir.resolve("server.log");
        String server = startServer(data, serverLog);

        final Run first = cli(server, "model", "upload", model.toString(), "--name", "llama", "--label", "stable",
            "--json");
        assertEquals(0, first.code(), first.err());

        // kill -9 the service and start it again on the same data directory
        sigkill(children.getFirst());
        server = startServer(data, serverLog);
        final ParamClient client = new ParamClient(server, TOKEN);
        assertEquals(1, client.show("llama", "stable").version());
        final Run verify = cli(server, "model", "verify", "llama@1");
        assertEquals(0, verify.code(), verify.out() + verify.err());
        final Path exported = dir.resolve("exported.gguf");
        assertEquals(0, cli(server, "model", "export", "llama@1", "--out", exported.toString()).code());
        assertTensorsEqual(model, exported);

        // an upload of another model, throttled so it can be killed half-way
        final Path objects = data.resolve("objects");
        final long blocksBefore = countFiles(objects);
        final Path uploadLog = dir.resolve("upload.log");
        final Process upload = strata(uploadLog, "model", "upload", other.toString(), "--name", "llama",
            "--limit-rate", "6M", "--server", server, "--token", TOKEN);
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (countFiles(objects) < blocksBefore + 3)
        {
            assertTrue(upload.isAlive(), () -> "the upload ended before it could be killed: " + read(uploadLog));
            assertTrue(System.nanoTime() < deadline, "the upload made no progress");
            Thread.sleep(20);
        }
        sigkill(upload);
        final long sent = countFiles(objects) - blocksBefore;

        // invisible: version 2 exists only as an upload in progress
        final java.util.List<dev.strata.paramclient.ServiceInfo.Version> versions = client.versions("llama");
        assertEquals(2, versions.size());
        assertEquals("uploading", versions.get(1).state());
        assertEquals(3, cli(server, "model", "show", "llama@2").code(), "an interrupted upload is invisible");
        assertEquals(1, client.show("llama", "stable").version());

        // re-running the same upload resumes version 2 and sends only what is still missing
        final Run resumed = cli(server, "model", "upload", other.toString(), "--name", "llama", "--json");
        assertEquals(0, resumed.code(), resumed.err());
        final JsonNode summary = JSON.readTree(resumed.out());
        assertEquals(2, summary.path("version").asInt());
        assertTrue(summary.path("resumed").asBoolean(), resumed.out());
        final long distinctNew = countFiles(objects) - blocksBefore;
        assertEquals(distinctNew - sent, summary.path("blocks_new").asLong(), "blocks stored before the kill are " +
            "not sent again: " + summary + ", " + sent + " stored before the kill");
        assertEquals("committed", client.show("llama", "2").state());
        final Path exported2 = dir.resolve("exported2.gguf");
        assertEquals(0, cli(server, "model", "export", "llama@2", "--out", exported2.toString()).code());
        assertTensorsEqual(other, exported2);
    }

    private static String read(final Path log)
    {
        try
        {
            return Files.readString(log);
        }
        catch (final IOException ex)
        {
            return ex.toString();
        }
    }

    /**
     * Stored objects under {@code root} (temporary files left out). The service writes while this counts: a
     * temporary file renamed or removed between the listing and its attributes is skipped, not an error.
     */
    private static long countFiles(final Path root) throws IOException
    {
        if (!Files.isDirectory(root))
        {
            return 0;
        }
        final long[] count = {0};
        Files.walkFileTree(root, new java.nio.file.SimpleFileVisitor<>()
        {
            @Override
            public java.nio.file.FileVisitResult visitFile(final Path file,
                final java.nio.file.attribute.BasicFileAttributes attrs)
            {
                if (attrs.isRegularFile() &&
                    !file.getFileName().toString().endsWith(dev.strata.tiering.DirectoryObjectTier.TEMP_SUFFIX))
                {
                    count[0]++;
                }
                return java.nio.file.FileVisitResult.CONTINUE;
            }

            @Override
            public java.nio.file.FileVisitResult visitFileFailed(final Path file, final IOException e)
                throws IOException
            {
                if (e instanceof java.nio.file.NoSuchFileException)
                {
                    return java.nio.file.FileVisitResult.CONTINUE; // gone while we looked: not a stored object
                }
                throw e;
            }
        });
        return count[0];
    }

    private static void assertTensorsEqual(final Path expected, final Path actual) throws IOException
    {
        try (GgufFile a = GgufFile.open(expected); GgufFile b = GgufFile.open(actual))
        {
            assertEquals(a.tensors().keySet(), b.tensors().keySet());
            for (final GgufTensorInfo t : a.tensors().values())
            {
                assertEquals(-1, a.tensorData(t).mismatch(b.tensorData(b.tensor(t.name()))), t.name());
            }
        }
    }

    /** The stack's JVM flags as this JVM got them (surefire's argLine, from the pom's {@code strata.jvm.flags}). */
    static List<String> stackJvmFlags()
    {
        final List<String> in = ManagementFactory.getRuntimeMXBean().getInputArguments();
        final List<String> out = new ArrayList<>();
        for (final String arg : in)
        {
            if (arg.startsWith("--add-") || arg.startsWith("--enable-native-access") ||
                arg.startsWith("--sun-misc-unsafe-memory-access") || arg.startsWith("-D"))
            {
                out.add(arg);
            }
        }
        return out;
    }
}
