package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Crash safety of the persistent tiers: a child JVM ({@link CrashWriter}) writes blocks of varied sizes into a
 * tier and acknowledges each one (id appended to an ack file and forced) only after its put returned; the test
 * kills it with SIGKILL ({@link Process#destroyForcibly()}) at a random moment in the middle of its writes,
 * then reopens the tier in this JVM and checks that
 * <ul>
 * <li>every acknowledged block is present and its bytes match its id (a possibly partial last ack line, cut
 * by the kill, is ignored: that put may or may not have completed);</li>
 * <li>no torn block is visible: every id the tier lists holds exactly the bytes that id names (for the
 * store's SSD and object tiers: once the {@link BlockCodec} stored form is decoded);</li>
 * <li>the directory tier leaves no {@code .tmp} leftovers after reopening, and its byte count matches its
 * blocks;</li>
 * <li>through the {@link TieredBlockStore} (memory + RocksDB SSD + directory object tier) every acknowledged
 * block can be acquired and verifies, with no corrupt copy met on the way.</li>
 * </ul>
 * Each kind runs two kill rounds on the same data directory, so the second round writes into (and is killed
 * in) a tier that already recovered from a crash. The child runs the same java binary on the test classpath
 * with the stack's JVM flags taken from this JVM's arguments (defined once, as {@code strata.jvm.flags} in the
 * parent pom). The kill delays and block contents derive from a seed printed at the start of each kind;
 * {@code -Dstrata.crash.seed=<seed>} replays it (the timing of the kill itself stays nondeterministic).
 */
class CrashSafetyTest
{
    private static final int ROUNDS = 2;
    private static final long MIN_RUN_MILLIS = 300;
    private static final long MAX_RUN_MILLIS = 1500;
    private static final long READY_TIMEOUT_MILLIS = 60_000;

    /** The raw tiers hold content as given. */
    private static final UnaryOperator<MemorySegment> RAW = UnaryOperator.identity();

    @TempDir
    Path dir;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"directory", "rocksdb", "store"})
    void acknowledgedBlocksSurviveSigkillAndNoTornBlockIsVisible(final String kind) throws Exception
    {
        final long seed = Long.getLong("strata.crash.seed", System.nanoTime());
        System.out.println("CrashSafetyTest[" + kind + "] seed=" + seed + " (replay with -Dstrata.crash.seed=" +
            seed + ")");
        final Random random = new Random(seed ^ kind.hashCode());
        final Path data = dir.resolve("data");
        final List<Path> ackFiles = new ArrayList<>();
        for (int round = 1; round <= ROUNDS; round++)
        {
            final Path ack = dir.resolve("ack-" + round + ".txt");
            final Path log = dir.resolve("child-" + round + ".log");
            ackFiles.add(ack);
            final long runMillis = MIN_RUN_MILLIS + random.nextLong(MAX_RUN_MILLIS - MIN_RUN_MILLIS + 1);
            final long blockSeed = random.nextLong();
            try
            {
                final long started = System.nanoTime();
                runAndKill(kind, data, ack, log, blockSeed, runMillis);
                final long killed = System.nanoTime();
                final Set<BlockId> acked = new LinkedHashSet<>();
                for (final Path a : ackFiles)
                {
                    acked.addAll(readAcks(a));
                }
                final int thisRound = readAcks(ack).size();
                assertTrue(thisRound > 0, "the child printed READY, so it acknowledged at least one block");
                final long temps = countTemps(kind.equals("store") ? data.resolve("object") : data);
                final String held = verify(kind, data, acked);
                System.out.printf("CrashSafetyTest[%s] round %d: killed after %d ms of writing (%.1f s incl. start);" +
                        " %d blocks acked this round, %d in all; %d .tmp left by the kill; %s; verified in %.1f s%n",
                    kind, round, runMillis, (killed - started) / 1e9, thisRound, acked.size(), temps, held,
                    (System.nanoTime() - killed) / 1e9);
            }
            catch (final Throwable t)
            {
                dumpLog(kind, round, log);
                throw t;
            }
        }
    }

    /** Starts the writer, waits for READY, lets it write for {@code runMillis}, then SIGKILLs it. */
    private static void runAndKill(final String kind, final Path data, final Path ack, final Path log,
        final long blockSeed, final long runMillis) throws Exception
    {
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow(
            () -> new AssertionError("cannot tell which java binary runs this test")));
        command.addAll(stackJvmFlags());
        command.add("-Xmx512m"); // the child's own heap: blocks are at most 3 MiB
        command.add("-XX:+UseSerialGC"); // few threads on a shared machine
        // RocksDB extracts its native library into java.io.tmpdir and deletes it at exit, which a SIGKILL skips:
        // keep those copies under the test's temp dir, which is cleaned
        final Path childTmp = Files.createDirectories(log.resolveSibling("child-tmp"));
        command.add("-Djava.io.tmpdir=" + childTmp);
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(CrashWriter.class.getName());
        command.add(kind);
        command.add(data.toString());
        command.add(ack.toString());
        command.add(Long.toString(blockSeed));
        Files.writeString(log, "command: " + String.join(" ", command) + System.lineSeparator());

        final Process child = new ProcessBuilder(command)
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
            .start();
        try
        {
            final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(READY_TIMEOUT_MILLIS);
            while (!isReady(log))
            {
                if (!child.isAlive())
                {
                    fail("the " + kind + " writer exited with " + child.exitValue() + " before READY");
                }
                if (System.nanoTime() > deadline)
                {
                    fail("the " + kind + " writer printed no READY within " + READY_TIMEOUT_MILLIS + " ms");
                }
                Thread.sleep(20);
            }
            Thread.sleep(runMillis);
            if (!child.isAlive())
            {
                dumpLog(kind, 0, log);
                fail("the " + kind + " writer died on its own (exit " + child.exitValue() + ") before the kill");
            }
        }
        finally
        {
            child.destroyForcibly(); // SIGKILL on Linux
            assertTrue(child.waitFor(30, TimeUnit.SECONDS), "the killed writer did not terminate");
            assertFalse(child.isAlive());
        }
        // 128 + SIGKILL: it was killed, not exited
        assertEquals(137, child.exitValue(), "exit status of the killed writer");
    }

    /**
     * The flags the stack needs, as this JVM was started with them (surefire's argLine, from the pom's
     * {@code strata.jvm.flags}): module and native-access options and system properties.
     */
    static List<String> stackJvmFlags()
    {
        final List<String> in = ManagementFactory.getRuntimeMXBean().getInputArguments();
        final List<String> out = new ArrayList<>();
        for (int i = 0; i < in.size(); i++)
        {
            final String arg = in.get(i);
            if (arg.startsWith("--add-") || arg.startsWith("--enable-native-access") ||
                arg.startsWith("--sun-misc-unsafe-memory-access"))
            {
                out.add(arg);
                if (!arg.contains("=") && i + 1 < in.size() && !in.get(i + 1).startsWith("-"))
                {
                    out.add(in.get(++i)); // the "--option value" form
                }
            }
            else if (arg.startsWith("-D"))
            {
                out.add(arg);
            }
        }
        return out;
    }

    /** Temporary files of interrupted directory-tier writes (none for a RocksDB directory). */
    private static long countTemps(final Path root) throws IOException
    {
        try (Stream<Path> files = Files.walk(root))
        {
            return files.filter(p -> p.getFileName().toString().endsWith(DirectoryObjectTier.TEMP_SUFFIX)).count();
        }
    }

    private static boolean isReady(final Path log) throws IOException
    {
        try (Stream<String> lines = Files.lines(log, StandardCharsets.UTF_8))
        {
            return lines.anyMatch("READY"::equals);
        }
    }

    /** The acknowledged ids of one round; a last line without its newline was cut by the kill and is ignored. */
    static List<BlockId> readAcks(final Path ack) throws IOException
    {
        final List<BlockId> ids = new ArrayList<>();
        if (!Files.exists(ack))
        {
            return ids;
        }
        final String text = Files.readString(ack, StandardCharsets.US_ASCII);
        int start = 0;
        for (int nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start))
        {
            ids.add(BlockId.parse(text.substring(start, nl)));
            start = nl + 1;
        }
        return ids;
    }

    /** Reopens the tier(s) of {@code kind} and checks them; returns a summary of what they hold. */
    private static String verify(final String kind, final Path data, final Set<BlockId> acked) throws IOException
    {
        return switch (kind)
        {
            case "directory" ->
            {
                try (DirectoryObjectTier tier = new DirectoryObjectTier(data))
                {
                    yield verifyDirectory(tier, acked, RAW);
                }
            }
            case "rocksdb" ->
            {
                try (RocksDbTier tier = new RocksDbTier(data, CrashWriter.ROCKSDB_BUDGET))
                {
                    assertAckedIntact(tier, acked, RAW);
                    final long bytes = assertNoTornBlock(tier, RAW);
                    yield "rocksdb holds " + tier.ids().size() + " blocks / " + bytes / CrashWriter.MIB + " MiB";
                }
            }
            case "store" ->
            {
                try (MemoryTier memory = new MemoryTier(CrashWriter.STORE_MEMORY_BUDGET, EvictionPolicy.lru());
                     RocksDbTier ssd = new RocksDbTier(data.resolve("ssd"), CrashWriter.STORE_SSD_BUDGET);
                     DirectoryObjectTier object = new DirectoryObjectTier(data.resolve("object"));
                     TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                         .memory(memory).ssd(ssd).object(object).maxBlockBytes(CrashWriter.STORE_MAX_BLOCK).prefetchThreads(1)))
                {
                    // the tiers first, directly: the store would silently repair a torn SSD copy
                    final BlockCodec codec = new BlockCodec(false);
                    final long ssdBytes = assertNoTornBlock(ssd, codec::decode);
                    final int ssdBlocks = ssd.ids().size();
                    final String objectSummary = verifyDirectory(object, acked, codec::decode);
                    for (final BlockId id : acked)
                    {
                        try (TieredBlockStore.Pinned pinned = store.acquire(id))
                        {
                            assertTrue(id.matches(pinned.bytes()), "acquired bytes of acked block " + id);
                        }
                    }
                    final TieredBlockStore.Stats stats = store.stats();
                    assertEquals(0, stats.corrupt()[TieredBlockStore.SSD], "corrupt SSD copies met by acquire");
                    assertEquals(0, stats.corrupt()[TieredBlockStore.OBJECT], "corrupt object copies met by acquire");
                    yield "ssd holds " + ssdBlocks + " blocks / " + ssdBytes / CrashWriter.MIB + " MiB, object " +
                        objectSummary;
                }
            }
            default -> throw new IllegalArgumentException(kind);
        };
    }

    private static String verifyDirectory(final DirectoryObjectTier tier, final Set<BlockId> acked,
        final UnaryOperator<MemorySegment> decode) throws IOException
    {
        try (Stream<Path> files = Files.walk(tier.root()))
        {
            final List<Path> temps = files
                .filter(p -> p.getFileName().toString().endsWith(DirectoryObjectTier.TEMP_SUFFIX)).toList();
            assertTrue(temps.isEmpty(), "temporary files left after reopening: " + temps);
        }
        assertAckedIntact(tier, acked, decode);
        final long bytes = assertNoTornBlock(tier, decode);
        assertEquals(bytes, tier.usedBytes(), "usedBytes of the reopened directory tier");
        return "holds " + tier.ids().size() + " blocks / " + bytes / CrashWriter.MIB + " MiB stored";
    }

    /** Every acked block is held, and its stored bytes decode to exactly its content. */
    private static void assertAckedIntact(final Tier tier, final Set<BlockId> acked,
        final UnaryOperator<MemorySegment> decode) throws IOException
    {
        for (final BlockId id : acked)
        {
            assertTrue(tier.contains(id), "acked block " + id + " is missing from the " + tier.name() + " tier");
            final MemorySegment stored = tier.get(id);
            assertNotNull(stored, "acked block " + id + " cannot be read from the " + tier.name() + " tier");
            final MemorySegment content = decode.apply(stored);
            assertTrue(content != null && id.matches(content), "acked block " + id + " is damaged in the " +
                tier.name() + " tier (" + stored.byteSize() + " bytes stored)");
        }
    }

    /** Every listed block's stored bytes decode to exactly its content; returns the total stored size. */
    private static long assertNoTornBlock(final Tier tier, final UnaryOperator<MemorySegment> decode)
        throws IOException
    {
        long total = 0;
        for (final BlockId id : tier.ids())
        {
            final MemorySegment stored = tier.get(id);
            assertNotNull(stored, "the " + tier.name() + " tier lists block " + id + " but cannot read it");
            final MemorySegment content = decode.apply(stored);
            assertTrue(content != null && id.matches(content), "torn block visible in the " + tier.name() +
                " tier: " + id + " holds " + stored.byteSize() + " stored bytes not matching its id");
            total += stored.byteSize();
        }
        return total;
    }

    private static void dumpLog(final String kind, final int round, final Path log)
    {
        try
        {
            System.err.println("---- child log of " + kind + " round " + round + " (" + log + ") ----");
            System.err.println(Files.readString(log, StandardCharsets.UTF_8));
            System.err.println("---- end of child log ----");
        }
        catch (final IOException ex)
        {
            System.err.println("cannot read the child log " + log + ": " + ex);
        }
    }
}
