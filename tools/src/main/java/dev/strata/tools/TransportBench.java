package dev.strata.tools;

import dev.strata.paramclient.BlockClient;
import dev.strata.paramserver.BlockServer;
import dev.strata.transport.BlockId;
import dev.strata.tiering.DirectoryObjectTier;
import dev.strata.tiering.EvictionPolicy;
import dev.strata.tiering.MemoryTier;
import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.aeron.Subscription;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code strata bench transport}: block pulls from a {@link BlockServer} over Aeron IPC and UDP loopback with the
 * memory tier warm, into reused off-heap memory as compute nodes pull: requests/s for 64 KiB blocks, GB/s for 4 MiB blocks (several requests in flight), and P50/P99
 * latency of single requests. Next to them, measured in the same run: single-thread memcpy bandwidth and the
 * UDP loopback limit (one sender and one receiver thread, 64 KB datagrams, plain sockets).
 */
@Command(name = "transport", description = "Block pulls over Aeron IPC and UDP loopback against memcpy and the " +
    "loopback limit.")
final class TransportBench implements Callable<Integer>
{
    private static final int SMALL = 64 << 10;
    private static final int LARGE = 4 << 20;
    private static final String VERSION = "bench@1";
    private static final long TIMEOUT = TimeUnit.SECONDS.toNanos(30);

    @Spec
    CommandSpec spec;

    @Option(names = "--seconds", description = "Seconds per throughput run (default ${DEFAULT-VALUE}).")
    double seconds = 3;

    @Option(names = "--window", description = "Requests in flight for throughput runs (default ${DEFAULT-VALUE}).")
    int window = 32;

    @Option(names = "--verify-digests", description = "Client re-hashes every block with SHA-256 (CRC32C per " +
        "chunk is always checked).")
    boolean verifyDigests;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        if (seconds <= 0 || window < 1 || window > 1000)
        {
            throw new IllegalArgumentException("--seconds must be > 0 and --window 1..1000");
        }
        final Map<String, Object> result = new LinkedHashMap<>();
        result.put("memcpy_gbs", memcpy() / 1e9);
        final long loopbackCpu = ProcessCpu.nanos();
        final long loopbackWall = System.nanoTime();
        result.put("udp_loopback_limit_gbs", udpLoopback(seconds) / 1e9);
        // on 2 cores every path here is bound by CPU: the cores it keeps busy per GB/s is what a copy costs
        result.put("udp_loopback_cores_busy", ProcessCpu.coresSince(loopbackCpu, loopbackWall));
        result.put("client_verifies_sha256", verifyDigests);

        final Path scratch = Files.createTempDirectory("strata-bench-transport");
        final SplittableRandom random = new SplittableRandom(7);
        try (MemoryTier memory = new MemoryTier(1L << 30, EvictionPolicy.lru());
            DirectoryObjectTier object = new DirectoryObjectTier(scratch);
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                .memory(memory).object(object).maxBlockBytes(16L << 20).prefetchThreads(1));
            Transport transport = Transport.launch(new TransportContext()))
        {
            final List<BlockId> small = blocks(store, random, SMALL, 1024);
            final List<BlockId> large = blocks(store, random, LARGE, 48);
            final Set<BlockId> all = new HashSet<>(small);
            all.addAll(large);
            final Subscription ipc = transport.subscription(TransportContext.IPC_CHANNEL, 1001);
            final Subscription udp = transport.subscription("aeron:udp?endpoint=localhost:0", 1001);
            String udpChannel;
            while ((udpChannel = udp.tryResolveChannelEndpointPort()) == null)
            {
                Thread.onSpinWait();
            }
            final BlockServer server = new BlockServer(store, List.of(ipc, udp), transport.aeron(),
                v -> v.equals(VERSION) ? all : null);
            try (AgentRunner runner = new AgentRunner(server.idleStrategy(), server::onAgentError, null,
                server))
            {
                AgentRunner.startOnThread(runner);
                // ipc-placed: IPC with the destinations in a shared region, which the server copies into directly
                final String[][] media = {{"ipc", TransportContext.IPC_CHANNEL},
                    {"ipc-placed", TransportContext.IPC_CHANNEL}, {"udp", udpChannel}};
                for (final String[] m : media)
                {
                    final boolean placed = m[0].equals("ipc-placed");
                    if (placed &&
                        !dev.strata.transport.bulk.SharedRegion.roomFor((long)LARGE * window + (16L << 20)))
                    {
                        continue;
                    }
                    final BlockClient client = BlockClient.connect(transport.aeron(), m[1], 1001, "localhost", TIMEOUT)
                        .verifyDigests(verifyDigests).directPlacement(placed);
                    final Map<String, Object> r = new LinkedHashMap<>();
                    final double rps = throughput(client, small, seconds, placed);
                    r.put("small_block_bytes", SMALL);
                    r.put("small_requests_per_s", rps);
                    final double[] smallLatency = latency(client, small, 2000, placed);
                    r.put("small_p50_us", smallLatency[0] / 1e3);
                    r.put("small_p99_us", smallLatency[1] / 1e3);
                    final long cpu = ProcessCpu.nanos();
                    final long wall = System.nanoTime();
                    final double largeRps = throughput(client, large, seconds, placed);
                    r.put("large_cores_busy", ProcessCpu.coresSince(cpu, wall));
                    r.put("large_block_bytes", LARGE);
                    r.put("large_gbs", largeRps * LARGE / 1e9);
                    final double[] largeLatency = latency(client, large, 200, placed);
                    r.put("large_p50_ms", largeLatency[0] / 1e6);
                    r.put("large_p99_ms", largeLatency[1] / 1e6);
                    r.put("large_vs_memcpy", largeRps * LARGE / 1e9 / (Double)result.get("memcpy_gbs"));
                    if (m[0].equals("udp"))
                    {
                        r.put("large_vs_loopback_limit", largeRps * LARGE / 1e9 /
                            (Double)result.get("udp_loopback_limit_gbs"));
                    }
                    client.close();
                    result.put(m[0], r);
                }
            }
        }
        finally
        {
            try (var files = Files.walk(scratch))
            {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        if (json)
        {
            out.println(ModelCommand.JSON.writeValueAsString(result));
        }
        else
        {
            out.printf(Locale.ROOT, "limits: memcpy %.1f GB/s (1 thread), UDP loopback %.2f GB/s (64 KB datagrams, " +
                "%.1f cores busy)%n", result.get("memcpy_gbs"), result.get("udp_loopback_limit_gbs"),
                result.get("udp_loopback_cores_busy"));
            for (final String medium : new String[]{"ipc", "ipc-placed", "udp"})
            {
                @SuppressWarnings("unchecked")
                final Map<String, Object> r = (Map<String, Object>)result.get(medium);
                if (r == null)
                {
                    continue;
                }
                out.printf(Locale.ROOT, "%s: 64 KiB %,.0f req/s (P50 %.0f us, P99 %.0f us); 4 MiB %.2f GB/s " +
                    "(P50 %.2f ms, P99 %.2f ms, %.1f cores busy)%s%n", medium, r.get("small_requests_per_s"),
                    r.get("small_p50_us"), r.get("small_p99_us"), r.get("large_gbs"), r.get("large_p50_ms"),
                    r.get("large_p99_ms"), r.get("large_cores_busy"),
                    r.containsKey("large_vs_loopback_limit") ? String.format(Locale.ROOT, ", %.0f%% of loopback",
                        100 * (Double)r.get("large_vs_loopback_limit")) : "");
            }
        }
        return 0;
    }

    private static List<BlockId> blocks(final TieredBlockStore store, final SplittableRandom random, final int size,
        final int count) throws Exception
    {
        final List<BlockId> ids = new ArrayList<>();
        final byte[] b = new byte[size];
        for (int i = 0; i < count; i++)
        {
            for (int j = 0; j < size; j += 8)
            {
                final long v = random.nextLong();
                for (int k = 0; k < 8 && j + k < size; k++)
                {
                    b[j + k] = (byte)(v >>> (8 * k));
                }
            }
            final BlockId id = store.put(MemorySegment.ofArray(b));
            store.acquire(id).close(); // warm: resident in the memory tier
            ids.add(id);
        }
        return ids;
    }

    /**
     * Completed single-block requests per second with {@link #window} in flight, each pulled into one of
     * {@link #window} reused off-heap slots as compute nodes pull ({@code submitInto}: one copy, from the Aeron log
     * into place).
     */
    private double throughput(final BlockClient client, final List<BlockId> ids, final double secs,
        final boolean shared) throws Exception
    {
        final long slotBytes = ids.get(0).length();
        try (Slots slotMemory = new Slots(slotBytes * window, shared))
        {
            final MemorySegment slots = slotMemory.segment;
            final long[][] at = new long[window][];
            for (int w = 0; w < window; w++)
            {
                at[w] = new long[]{w * slotBytes};
            }
            final ArrayDeque<long[]> inflight = new ArrayDeque<>(); // {correlation id, slot}
            final ArrayDeque<Integer> free = new ArrayDeque<>();
            for (int w = 0; w < window; w++)
            {
                free.add(w);
            }
            // warm-up
            for (int i = 0; i < Math.min(ids.size(), 64); i++)
            {
                client.await(client.submitInto(VERSION, List.of(ids.get(i)), slots, at[0], TIMEOUT, 0));
            }
            final long start = System.nanoTime();
            final long end = start + (long)(secs * 1e9);
            long done = 0;
            int next = 0;
            while (System.nanoTime() < end)
            {
                while (!free.isEmpty())
                {
                    final int slot = free.poll();
                    inflight.add(new long[]{client.submitInto(VERSION, List.of(ids.get(next++ % ids.size())), slots,
                        at[slot], TIMEOUT, 0), slot});
                }
                final long[] oldest = inflight.poll();
                client.await(oldest[0]);
                free.add((int)oldest[1]);
                done++;
            }
            while (!inflight.isEmpty())
            {
                client.await(inflight.poll()[0]);
                done++;
            }
            return done / ((System.nanoTime() - start) / 1e9);
        }
    }

    /** P50 and P99 in nanoseconds of one request at a time. */
    private static double[] latency(final BlockClient client, final List<BlockId> ids, final int samples,
        final boolean shared) throws Exception
    {
        final long[] t = new long[samples];
        try (Slots slotMemory = new Slots(ids.get(0).length(), shared))
        {
            final MemorySegment slot = slotMemory.segment;
            final long[] at = {0};
            for (int i = 0; i < samples; i++)
            {
                final long s = System.nanoTime();
                client.await(client.submitInto(VERSION, List.of(ids.get(i % ids.size())), slot, at, TIMEOUT, 0));
                t[i] = System.nanoTime() - s;
            }
        }
        Arrays.sort(t);
        return new double[]{t[samples / 2], t[(int)Math.min(samples - 1, Math.ceil(samples * 0.99) - 1)]};
    }

    /** Destination memory: off-heap, or a shared region the server places blocks into. */
    private static final class Slots implements AutoCloseable
    {
        final MemorySegment segment;
        private final Arena arena;
        private final dev.strata.transport.bulk.SharedRegion region;

        Slots(final long bytes, final boolean shared) throws java.io.IOException
        {
            region = shared ? dev.strata.transport.bulk.SharedRegion.create(bytes) : null;
            arena = shared ? null : Arena.ofConfined();
            segment = shared ? region.segment() : arena.allocate(bytes, 64);
        }

        @Override
        public void close()
        {
            if (region != null)
            {
                region.close();
            }
            else
            {
                arena.close();
            }
        }
    }

    /** Best of three single-thread copies of 256 MiB between off-heap buffers, in bytes/s. */
    static double memcpy()
    {
        final long n = 256L << 20;
        try (Arena arena = Arena.ofConfined())
        {
            final MemorySegment a = arena.allocate(n, 64);
            final MemorySegment b = arena.allocate(n, 64);
            a.fill((byte)1);
            b.fill((byte)2);
            double best = 0;
            for (int i = 0; i < 4; i++)
            {
                final long s = System.nanoTime();
                MemorySegment.copy(a, 0, b, 0, n);
                best = Math.max(best, n / ((System.nanoTime() - s) / 1e9));
            }
            return best;
        }
    }

    /**
     * The UDP loopback limit: bytes/s one thread receives from another on 127.0.0.1 with 64 KB datagrams and 4 MiB
     * socket buffers (an unthrottled sender; what arrives counts). Best of three runs: the machine is shared.
     */
    static double udpLoopback(final double secs) throws Exception
    {
        double best = 0;
        for (int i = 0; i < 3; i++)
        {
            best = Math.max(best, udpLoopbackOnce(Math.max(0.5, secs / 3)));
        }
        return best;
    }

    private static double udpLoopbackOnce(final double secs) throws Exception
    {
        try (DatagramChannel rx = DatagramChannel.open(); DatagramChannel tx = DatagramChannel.open())
        {
            rx.setOption(StandardSocketOptions.SO_RCVBUF, 4 << 20);
            tx.setOption(StandardSocketOptions.SO_SNDBUF, 4 << 20);
            rx.bind(new InetSocketAddress("127.0.0.1", 0));
            tx.connect(rx.getLocalAddress());
            final AtomicBoolean stop = new AtomicBoolean();
            final AtomicLong received = new AtomicLong();
            final Thread receiver = Thread.ofPlatform().start(() ->
            {
                final ByteBuffer buf = ByteBuffer.allocateDirect(65_536);
                try
                {
                    while (!stop.get())
                    {
                        buf.clear();
                        rx.receive(buf); // blocking: the receiver sleeps when nothing is there
                        received.addAndGet(buf.position());
                    }
                }
                catch (final Exception ignored)
                {
                    // closed at the end
                }
            });
            final ByteBuffer payload = ByteBuffer.allocateDirect(64_000);
            final long warm = System.nanoTime() + 100_000_000L;
            while (System.nanoTime() < warm)
            {
                payload.clear();
                tx.write(payload);
            }
            final long r0 = received.get();
            final long start = System.nanoTime();
            final long end = start + (long)(secs * 1e9);
            while (System.nanoTime() < end)
            {
                payload.clear();
                tx.write(payload);
            }
            final double rate = (received.get() - r0) / ((System.nanoTime() - start) / 1e9);
            stop.set(true);
            rx.close();
            receiver.join();
            return rate;
        }
    }
}
