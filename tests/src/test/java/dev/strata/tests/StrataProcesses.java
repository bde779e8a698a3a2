package dev.strata.tests;

import dev.strata.tools.Main;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@code strata} child JVMs for system tests: started with the stack's JVM flags (taken from this JVM, which surefire
 * started with the pom's {@code strata.jvm.flags}), output appended to a log, killed with SIGKILL or stopped with
 * SIGTERM; and the CLI run in-process against them. Close to kill whatever is still running.
 */
final class StrataProcesses implements AutoCloseable
{
    private static final Pattern ADMIN = Pattern.compile("admin http://[^:]+:(\\d+)");

    record Run(int code, String out, String err)
    {
    }

    private final Path dir;
    private final Path tokenFile;
    private final String token;
    private final List<Process> children = new ArrayList<>();

    /** @param dir where logs, driver directories and the token file go. */
    StrataProcesses(final Path dir, final String token) throws IOException
    {
        this.dir = dir;
        this.token = token;
        this.tokenFile = dir.resolve("token");
        Files.writeString(tokenFile, token + "\n");
    }

    Path tokenFile()
    {
        return tokenFile;
    }

    /**
     * A {@code strata ...} child JVM. {@code aeronDir} null leaves the driver's directory to its default (under
     * /dev/shm); tests that kill processes otherwise keep it under their temp dir.
     */
    Process start(final Path log, final Path aeronDir, final String... args) throws IOException
    {
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow());
        command.addAll(ParamServerProcessTest.stackJvmFlags().stream()
            .filter(a -> !a.startsWith("-Dstrata.aeron.dir")).toList());
        command.add("-Xmx384m");
        command.add("-XX:+UseSerialGC");
        if (aeronDir != null)
        {
            command.add("-Dstrata.aeron.dir=" + aeronDir);
        }
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(Main.class.getName());
        command.addAll(List.of(args));
        final Process p = new ProcessBuilder(command).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        children.add(p);
        return p;
    }

    /** A started {@code strata param-server} with its admin address. */
    record Server(Process process, String address)
    {
    }

    /** Starts {@code strata param-server} on {@code data} (token from the token file) and waits for its admin port. */
    Server startServer(final Path data, final Path log, final Path aeronDir, final String... extra) throws Exception
    {
        final long before = Files.exists(log) ? Files.size(log) : 0;
        final List<String> args = new ArrayList<>(List.of("param-server", "--data-dir", data.toString(),
            "--admin-port", "0", "--token-file", tokenFile.toString()));
        args.addAll(List.of(extra));
        final Process p = start(log, aeronDir, args.toArray(String[]::new));
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < deadline)
        {
            if (Files.exists(log))
            {
                final String text = Files.readString(log).substring((int)before);
                final Matcher m = ADMIN.matcher(text);
                if (m.find())
                {
                    return new Server(p, "127.0.0.1:" + m.group(1));
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

    /** The CLI in this JVM against {@code server}, with the admin token. */
    Run cli(final String server, final String... args)
    {
        final List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("--server", server, "--token", token));
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final int code = Main.run(new PrintWriter(out), new PrintWriter(err), all.toArray(String[]::new));
        return new Run(code, out.toString(), err.toString());
    }

    static void sigkill(final Process p) throws InterruptedException
    {
        p.destroyForcibly(); // SIGKILL on Linux
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "killed");
    }

    /** SIGTERM, and wait for the shutdown hook to finish. */
    static int sigterm(final Process p) throws InterruptedException
    {
        p.destroy();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "stopped");
        return p.exitValue();
    }

    static String read(final Path log)
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

    @Override
    public void close()
    {
        children.forEach(Process::destroyForcibly);
    }
}
