package dev.strata.tests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Fault injection against real processes for a bounded time ({@code -Dstrata.fault.seconds}, 90 by default; the
 * seed is printed and {@code -Dstrata.fault.seed} replays the choices): each round runs one of upload, rm, gc,
 * verify and export with the {@code strata model} CLI, and SIGKILLs the client (then a child process) or the
 * service (a child process always) at a random moment of it, or neither; while the service is down, random bytes are flipped in a random file of the SSD tier,
 * the object tier or the block index. Every restart must succeed, and no version acknowledged (an upload that
 * exited 0) may disappear unless an rm of it was started. At the end every acknowledged version still there must
 * verify (one whose only copy of a block was damaged is healed by uploading its file again, as {@code verify}
 * says) and export byte-identical to its file.
 */
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class ParamServerFaultInjectionTest
{
    private static final String TOKEN = "fault-token";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String[] ACTIONS = {"upload", "upload", "rm", "gc", "verify", "export"};

    @TempDir
    Path dir;

    private StrataProcesses strata;

    @AfterEach
    void stop()
    {
        if (strata != null)
        {
            strata.close();
        }
    }

    /** name@version -> the file it was uploaded from. */
    private final Map<String, Path> acked = new LinkedHashMap<>();
    private final Set<String> rmStarted = new HashSet<>();
    private int starts;

    @Test
    void everyAcknowledgedVersionSurvivesKillsAndDamagedTiers() throws Exception
    {
        final long seed = Long.getLong("strata.fault.seed", System.nanoTime());
        final long seconds = Long.getLong("strata.fault.seconds", 90);
        System.out.println("ParamServerFaultInjectionTest seed=" + seed + " seconds=" + seconds +
            " (replay with -Dstrata.fault.seed=" + seed + ")");
        final Random random = new Random(seed);
        strata = new StrataProcesses(dir, TOKEN);
        final List<Path> files = new ArrayList<>();
        for (int i = 0; i < 3; i++)
        {
            final Path f = dir.resolve("m" + i + ".gguf");
            SyntheticModel.write(f, SyntheticModel.Shape.parse("dim=256,layers=2,heads=8,kv=4,ffn=768"), GgmlType.F32,
                null, 10 + i);
            files.add(f);
        }
        final Path data = dir.resolve("data");
        final Path serverLog = dir.resolve("server.log");
        StrataProcesses.Server server = start(data, serverLog);
        final Path cliLog = dir.resolve("cli.log");
        final long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        int rounds = 0;
        int serverKills = 0;
        int clientKills = 0;
        int flips = 0;
        try
        {
            while (System.nanoTime() < end)
            {
                rounds++;
                final String action = ACTIONS[random.nextInt(ACTIONS.length)];
                final Path file = files.get(random.nextInt(files.size()));
                final String name = "m" + random.nextInt(2);
                final List<String> args = new ArrayList<>();
                String target = null;
                switch (action)
                {
                    case "upload" -> args.addAll(List.of("model", "upload", file.toString(), "--name", name, "--json"));
                    case "gc" -> args.addAll(List.of("model", "gc"));
                    default ->
                    {
                        if (acked.isEmpty())
                        {
                            continue;
                        }
                        target = new ArrayList<>(acked.keySet()).get(random.nextInt(acked.size()));
                        args.addAll(switch (action)
                        {
                            case "rm" -> List.of("model", "rm", target);
                            case "verify" -> List.of("model", "verify", target);
                            default -> List.of("model", "export", target, "--out", dir.resolve("out.gguf").toString());
                        });
                        if (action.equals("rm"))
                        {
                            rmStarted.add(target);
                        }
                    }
                }
                final int fault = random.nextInt(3); // 0: none, 1: kill the client, 2: kill the service
                final long delay = 200 + random.nextInt(2500);
                boolean serverDown = false;
                final int code;
                final String out;
                if (fault == 1)
                {
                    // a client to kill runs as its own process
                    args.addAll(List.of("--server", server.address(), "--token-file", strata.tokenFile().toString()));
                    final long before = Files.exists(cliLog) ? Files.size(cliLog) : 0;
                    final Process client = strata.start(cliLog, null, args.toArray(String[]::new));
                    if (!client.waitFor(delay, TimeUnit.MILLISECONDS))
                    {
                        StrataProcesses.sigkill(client);
                        clientKills++;
                    }
                    code = client.exitValue();
                    out = Files.readString(cliLog).substring((int)before);
                }
                else
                {
                    // otherwise in this JVM (cheaper on a shared machine), the service maybe killed under it
                    final String address = server.address();
                    final java.util.concurrent.CompletableFuture<StrataProcesses.Run> run =
                        java.util.concurrent.CompletableFuture.supplyAsync(() -> strata.cli(address,
                            args.toArray(String[]::new)));
                    if (fault == 2)
                    {
                        try
                        {
                            run.get(delay, TimeUnit.MILLISECONDS);
                        }
                        catch (final java.util.concurrent.TimeoutException stillRunning)
                        {
                            StrataProcesses.sigkill(server.process());
                            serverKills++;
                            serverDown = true;
                        }
                    }
                    final StrataProcesses.Run r = run.get(180, TimeUnit.SECONDS);
                    code = r.code();
                    out = r.out();
                    Files.writeString(cliLog, String.join(" ", args) + " -> " + r.code() + "\n" + r.out() + r.err(),
                        StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                }
                if (action.equals("upload") && code == 0)
                {
                    final JsonNode summary = JSON.readTree(out.substring(out.indexOf('{')));
                    acked.put(name + "@" + summary.path("version").asInt(), file);
                }
                if (serverDown || random.nextInt(4) == 0)
                {
                    if (!serverDown)
                    {
                        StrataProcesses.sigkill(server.process());
                        serverKills++;
                    }
                    if (random.nextInt(2) == 0)
                    {
                        flips += flipRandomBytes(data, random);
                    }
                    server = start(data, serverLog);
                }
                checkAcknowledged(new ParamClient(server.address(), TOKEN));
            }
            System.out.printf("ParamServerFaultInjectionTest: %d rounds, %d service kills, %d client kills, %d " +
                "files damaged, %d versions acknowledged%n", rounds, serverKills, clientKills, flips, acked.size());

            // the end: a last kill and restart, then every acknowledged version verifies and exports identical
            StrataProcesses.sigkill(server.process());
            server = start(data, serverLog);
            final ParamClient client = new ParamClient(server.address(), TOKEN);
            checkAcknowledged(client);
            assertTrue(!acked.isEmpty() || rounds < 3, "versions were acknowledged");
            for (final Map.Entry<String, Path> v : acked.entrySet())
            {
                StrataProcesses.Run verify = strata.cli(server.address(), "model", "verify", v.getKey());
                if (verify.code() == 5)
                {
                    // a block whose only copy was damaged: heal it as verify says, by uploading the file again
                    final String name = v.getKey().substring(0, v.getKey().indexOf('@'));
                    final StrataProcesses.Run heal = strata.cli(server.address(), "model", "upload",
                        v.getValue().toString(), "--name", name, "--json");
                    assertEquals(0, heal.code(), heal.out() + heal.err());
                    verify = strata.cli(server.address(), "model", "verify", v.getKey());
                }
                assertEquals(0, verify.code(), v.getKey() + ": " + verify.out() + verify.err());
                final Path exported = dir.resolve("final.gguf");
                final StrataProcesses.Run export = strata.cli(server.address(), "model", "export", v.getKey(),
                    "--out", exported.toString());
                assertEquals(0, export.code(), export.err());
                ParamServerRecoveryProcessTest.assertTensorsEqual(v.getValue(), exported);
            }
        }
        catch (final Throwable t)
        {
            System.out.println("--- server log\n" + tail(serverLog) + "\n--- client log\n" + tail(cliLog));
            throw t;
        }
    }

    private StrataProcesses.Server start(final Path data, final Path log) throws Exception
    {
        return strata.startServer(data, log, dir.resolve("aeron-" + starts++));
    }

    /** Acknowledged versions are there, except those an rm was started for (which may or may not be gone). */
    private void checkAcknowledged(final ParamClient client) throws IOException
    {
        for (final String v : new ArrayList<>(acked.keySet()))
        {
            final String name = v.substring(0, v.indexOf('@'));
            final int number = Integer.parseInt(v.substring(v.indexOf('@') + 1));
            String state = "absent";
            for (final ServiceInfo.Version ver : client.versions(name))
            {
                if (ver.version() == number)
                {
                    state = ver.state();
                }
            }
            if (state.equals("deleted") || state.equals("absent"))
            {
                if (!rmStarted.contains(v))
                {
                    fail(v + " was acknowledged and is " + state + " though no rm of it was started");
                }
                acked.remove(v);
            }
        }
    }

    /** Flips 1-4 random bytes in a random file of the SSD tier, the object tier or the block index. */
    private static int flipRandomBytes(final Path data, final Random random) throws IOException
    {
        final List<Path> candidates = new ArrayList<>();
        for (final Path root : List.of(data.resolve("ssd"), data.resolve("objects")))
        {
            if (Files.isDirectory(root))
            {
                try (Stream<Path> s = Files.walk(root))
                {
                    s.filter(Files::isRegularFile).filter(p -> p.toFile().length() > 0).forEach(candidates::add);
                }
            }
        }
        if (Files.exists(data.resolve("block-index.dat")))
        {
            candidates.add(data.resolve("block-index.dat"));
        }
        if (candidates.isEmpty())
        {
            return 0;
        }
        final Path f = candidates.get(random.nextInt(candidates.size()));
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, StandardOpenOption.WRITE))
        {
            final int n = 1 + random.nextInt(4);
            for (int i = 0; i < n; i++)
            {
                final long at = (long)(random.nextDouble() * ch.size());
                final ByteBuffer b = ByteBuffer.allocate(1);
                ch.read(b, at);
                ch.write(ByteBuffer.wrap(new byte[]{(byte)(b.get(0) ^ (1 << random.nextInt(8)))}), at);
            }
        }
        System.out.println("ParamServerFaultInjectionTest: damaged " + data.relativize(f));
        return 1;
    }

    private static String tail(final Path log)
    {
        final String text = StrataProcesses.read(log);
        return text.length() > 20_000 ? text.substring(text.length() - 20_000) : text;
    }
}
