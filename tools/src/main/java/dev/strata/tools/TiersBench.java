package dev.strata.tools;

import com.sun.nio.file.ExtendedOpenOption;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.transport.BlockId;
import dev.strata.tiering.DirectoryObjectTier;
import dev.strata.tiering.EvictionPolicy;
import dev.strata.tiering.MemoryTier;
import dev.strata.tiering.RocksDbTier;
import dev.strata.tiering.Tier;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * {@code strata bench tiers}: read throughput and latency of each tier for 1 MiB and 4 MiB blocks with 1 and 2
 * readers, next to the machine's limits measured in the same run (memory read bandwidth; SSD read bandwidth
 * with direct I/O). Memory-tier reads touch every byte through the zero-copy view.
 */
@Command(name = "tiers", description = "Read throughput and P50/P99 latency of the memory, SSD and object tiers.")
final class TiersBench implements Callable<Integer>
{
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int[] SIZES = {1 << 20, 4 << 20};

    @Spec
    CommandSpec spec;

    @Option(names = "--dir", required = true, description = "Scratch directory on the SSD to test.")
    Path dir;

    @Option(names = "--mib", description = "MiB of blocks per size and tier (default: ${DEFAULT-VALUE}).")
    int mib = 512;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    static volatile double sink;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        if (mib < 16)
        {
            throw new IllegalArgumentException("--mib must be at least 16");
        }
        Files.createDirectories(dir);
        final Map<String, Object> result = new LinkedHashMap<>();
        try (ThreadPool pool = new ThreadPool(2))
        {
            final double memLimit = MemoryBandwidth.measure(pool, 1L << 30, 3);
            final double ssdLimit = directReadBandwidth(dir.resolve("direct-io.bin"), 1L << 30);
            result.put("memory_limit_gbs", memLimit / 1e9);
            result.put("ssd_direct_limit_gbs", ssdLimit / 1e9);
            try (MemoryTier memory = new MemoryTier((long)mib << 21, EvictionPolicy.lru());
                RocksDbTier ssd = new RocksDbTier(dir.resolve("ssd"), (long)mib << 22);
                DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("object")))
            {
                for (final int size : SIZES)
                {
                    final List<BlockId> ids = fill(size, memory, ssd, object);
                    for (int warm = 0; warm < 3; warm++)
                    {
                        read(memory, ids, 2); // let the JIT compile the read path first
                    }
                    for (final Tier tier : new Tier[]{memory, ssd, object})
                    {
                        for (final int readers : new int[]{1, 2})
                        {
                            if (tier != memory)
                            {
                                // SSD and object reads are measured cold: blocks not in the page cache
                                result.put("page_cache_dropped", dropPageCache());
                            }
                            final double[] r = read(tier, ids, readers);
                            final String key = tier.name() + "_" + (size >> 20) + "mib_" + readers + "r";
                            result.put(key + "_gbs", r[0]);
                            result.put(key + "_p50_ms", r[1]);
                            result.put(key + "_p99_ms", r[2]);
                        }
                    }
                    for (final BlockId id : ids)
                    {
                        memory.delete(id);
                        ssd.delete(id);
                        object.delete(id);
                    }
                }
            }
        }
        result.put("memory_read_gbs", result.get("memory_4mib_2r_gbs"));
        result.put("ssd_read_gbs", result.get("ssd_4mib_2r_gbs"));
        result.put("object_read_gbs", result.get("object_4mib_2r_gbs"));
        result.put("memory_fraction_of_limit", (Double)result.get("memory_read_gbs") / (Double)result.get("memory_limit_gbs"));
        result.put("ssd_fraction_of_limit", (Double)result.get("ssd_read_gbs") / (Double)result.get("ssd_direct_limit_gbs"));
        if (json)
        {
            final StringBuilder sb = new StringBuilder("{");
            result.forEach((k, v) -> sb.append(sb.length() > 1 ? "," : "").append('"').append(k).append("\":")
                .append(v instanceof Double d ? String.format("%.4f", d) : v));
            out.println(sb.append('}'));
        }
        else
        {
            result.forEach((k, v) -> out.printf("%-28s %s%n", k, v instanceof Double d ? String.format("%.3f", d) : v));
        }
        return 0;
    }

    private List<BlockId> fill(final int size, final MemoryTier memory, final Tier ssd, final Tier object)
        throws IOException
    {
        final int count = (int)(((long)mib << 20) / size);
        final List<BlockId> ids = new ArrayList<>();
        final SplittableRandom random = new SplittableRandom(size);
        final byte[] bytes = new byte[size];
        for (int i = 0; i < count; i++)
        {
            random.nextBytes(bytes);
            final MemorySegment seg = MemorySegment.ofArray(bytes);
            final BlockId id = BlockId.of(seg);
            memory.put(id, seg);
            ssd.put(id, seg);
            object.put(id, seg);
            ids.add(id);
        }
        return ids;
    }

    /** Reads every block once per reader pass; returns {GB/s, p50 ms, p99 ms}. */
    private static double[] read(final Tier tier, final List<BlockId> ids, final int readers) throws Exception
    {
        final long[] latencies = new long[ids.size()];
        final AtomicInteger next = new AtomicInteger();
        final long bytes = ids.size() * ids.getFirst().length();
        final Thread[] threads = new Thread[readers];
        final Exception[] failure = new Exception[1];
        final long t0 = System.nanoTime();
        for (int r = 0; r < readers; r++)
        {
            threads[r] = Thread.ofPlatform().start(() ->
            {
                int i;
                while ((i = next.getAndIncrement()) < ids.size())
                {
                    try
                    {
                        final long s = System.nanoTime();
                        sink = touch(tier.get(ids.get(i)));
                        latencies[i] = System.nanoTime() - s;
                    }
                    catch (final IOException ex)
                    {
                        failure[0] = ex;
                        return;
                    }
                }
            });
        }
        for (final Thread t : threads)
        {
            t.join();
        }
        final long elapsed = System.nanoTime() - t0;
        if (failure[0] != null)
        {
            throw failure[0];
        }
        Arrays.sort(latencies);
        return new double[]{bytes / (double)elapsed, latencies[latencies.length / 2] / 1e6,
            latencies[(int)(latencies.length * 0.99)] / 1e6};
    }

    /** Reads every byte of a block (so that a zero-copy view is really read). */
    private static double touch(final MemorySegment s)
    {
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
        final int step = F.vectorByteSize();
        long o = 0;
        for (; o + 2L * step <= s.byteSize(); o += 2L * step)
        {
            a0 = a0.add(FloatVector.fromMemorySegment(F, s, o, ByteOrder.nativeOrder()));
            a1 = a1.add(FloatVector.fromMemorySegment(F, s, o + step, ByteOrder.nativeOrder()));
        }
        return a0.add(a1).reduceLanes(VectorOperators.ADD) + o;
    }

    /** Drops the page cache (needs root); returns whether it could. */
    private static boolean dropPageCache()
    {
        try
        {
            Files.writeString(Path.of("/proc/sys/vm/drop_caches"), "1");
            return true;
        }
        catch (final IOException | SecurityException ex)
        {
            return false;
        }
    }

    /** Sequential 4 MiB reads with O_DIRECT by 2 threads over a file of {@code size} bytes. */
    private static double directReadBandwidth(final Path file, final long size) throws IOException
    {
        final int chunk = 4 << 20;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING))
        {
            final ByteBuffer b = ByteBuffer.allocateDirect(chunk);
            for (long off = 0; off < size; off += chunk)
            {
                b.clear();
                while (b.hasRemaining())
                {
                    ch.write(b);
                }
            }
            ch.force(true);
        }
        final int block = (int)Files.getFileStore(file).getBlockSize();
        final AtomicInteger next = new AtomicInteger();
        final int chunks = (int)(size / chunk);
        final Thread[] threads = new Thread[2];
        final IOException[] failure = new IOException[1];
        final long t0 = System.nanoTime();
        for (int r = 0; r < threads.length; r++)
        {
            threads[r] = Thread.ofPlatform().start(() ->
            {
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, ExtendedOpenOption.DIRECT);
                    Arena arena = Arena.ofConfined())
                {
                    final ByteBuffer buf = arena.allocate(chunk, block).asByteBuffer();
                    int i;
                    while ((i = next.getAndIncrement()) < chunks)
                    {
                        buf.clear();
                        long pos = (long)i * chunk;
                        while (buf.hasRemaining())
                        {
                            final int n = ch.read(buf, pos);
                            if (n < 0)
                            {
                                break;
                            }
                            pos += n;
                        }
                    }
                }
                catch (final IOException ex)
                {
                    failure[0] = ex;
                }
            });
        }
        for (final Thread t : threads)
        {
            try
            {
                t.join();
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        }
        final long elapsed = System.nanoTime() - t0;
        Files.deleteIfExists(file);
        if (failure[0] != null)
        {
            throw new IOException("direct I/O read of " + file + " failed: " + failure[0].getMessage(), failure[0]);
        }
        return size * 1e9 / elapsed;
    }
}
