package dev.strata.prefetch;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A full access trace of a streaming node's layer units, with timings, the settings it ran under and what each
 * access found; a what-if replay ({@link TraceReplay}) runs it again under other settings. Text, so it can be read:
 * <pre>
 * strata-access-trace 1
 * settings layers=4 globals=65536 layer=131072,131072,131072,131072 budget=458752 lookahead=1 prefetch=true link=1000000000
 * 0 0 d 120000
 * 950000 1 h 0
 * ...
 * </pre>
 * after the settings, one access per line: nanoseconds since the first access, the layer, what the access found
 * ({@code h}: resident, {@code l}: its prefetch still in flight, waited for; {@code d}: absent, a demand fetch) and
 * the nanoseconds the forward pass waited.
 *
 * @param settings what the node ran with.
 * @param atNanos  time of each access since the first.
 * @param layer    the layer of each access.
 * @param outcome  {@link #HIT}, {@link #LATE} or {@link #DEMAND} per access.
 * @param waited   nanoseconds waited per access.
 */
public record LayerTrace(Settings settings, long[] atNanos, int[] layer, byte[] outcome, long[] waited)
{
    public static final byte HIT = 'h';
    public static final byte LATE = 'l';
    public static final byte DEMAND = 'd';
    private static final String MAGIC = "strata-access-trace 1";

    /**
     * The settings of a run.
     *
     * @param globalsBytes      bytes of the global tensors (resident for good).
     * @param layerBytes        bytes of each layer unit.
     * @param budgetBytes       the node's memory budget.
     * @param lookahead         fixed look-ahead, or 0 for the adaptive one (then {@code maxLookahead} bounds it).
     * @param maxLookahead      the most layers the adaptive look-ahead reaches.
     * @param prefetch          whether layers were prefetched at all.
     * @param linkBytesPerSecond the link's measured (or assumed) bandwidth, for the stall estimate.
     */
    public record Settings(long globalsBytes, long[] layerBytes, long budgetBytes, int lookahead, int maxLookahead,
        boolean prefetch, long linkBytesPerSecond)
    {
        public Settings
        {
            if (layerBytes.length < 1 || globalsBytes < 0 || budgetBytes <= 0 || lookahead < 0 || maxLookahead < 1 ||
                linkBytesPerSecond <= 0)
            {
                throw new IllegalArgumentException("invalid trace settings: layers=" + layerBytes.length + " globals=" +
                    globalsBytes + " budget=" + budgetBytes + " lookahead=" + lookahead + " maxLookahead=" +
                    maxLookahead + " link=" + linkBytesPerSecond);
            }
        }

        public int layers()
        {
            return layerBytes.length;
        }

        public Settings with(final long budget, final int look, final boolean pre, final long link)
        {
            return new Settings(globalsBytes, layerBytes, budget, look, maxLookahead, pre, link);
        }
    }

    /** Accesses that found their unit resident or in flight, and those that needed a demand fetch. */
    public long count(final byte what)
    {
        long n = 0;
        for (final byte b : outcome)
        {
            n += b == what ? 1 : 0;
        }
        return n;
    }

    public int size()
    {
        return layer.length;
    }

    /** Writes the trace (to a temporary file first, then renamed over {@code file}). */
    public void write(final Path file) throws IOException
    {
        final Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.US_ASCII))
        {
            out.write(MAGIC);
            out.newLine();
            final StringBuilder sizes = new StringBuilder();
            for (final long b : settings.layerBytes)
            {
                sizes.append(sizes.isEmpty() ? "" : ",").append(b);
            }
            out.write("settings layers=" + settings.layers() + " globals=" + settings.globalsBytes + " layer=" + sizes +
                " budget=" + settings.budgetBytes + " lookahead=" + settings.lookahead + " max_lookahead=" +
                settings.maxLookahead + " prefetch=" + settings.prefetch + " link=" + settings.linkBytesPerSecond);
            out.newLine();
            for (int i = 0; i < layer.length; i++)
            {
                out.write(atNanos[i] + " " + layer[i] + " " + (char)outcome[i] + " " + waited[i]);
                out.newLine();
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** @throws IOException naming the file and line of anything malformed. */
    public static LayerTrace read(final Path file) throws IOException
    {
        final List<String> lines = Files.readAllLines(file, StandardCharsets.US_ASCII);
        if (lines.size() < 2 || !lines.get(0).equals(MAGIC) || !lines.get(1).startsWith("settings "))
        {
            throw new IOException(file + " is not an access trace (its first lines must be '" + MAGIC +
                "' and 'settings ...')");
        }
        final Map<String, String> kv = new HashMap<>();
        for (final String item : lines.get(1).substring("settings ".length()).trim().split("\\s+"))
        {
            final int eq = item.indexOf('=');
            if (eq < 1)
            {
                throw new IOException(file + " line 2: '" + item + "' is not key=value");
            }
            kv.put(item.substring(0, eq), item.substring(eq + 1));
        }
        final Settings settings;
        try
        {
            final long[] sizes = Arrays.stream(require(kv, "layer", file).split(",")).mapToLong(Long::parseLong).toArray();
            settings = new Settings(Long.parseLong(require(kv, "globals", file)), sizes,
                Long.parseLong(require(kv, "budget", file)), Integer.parseInt(require(kv, "lookahead", file)),
                Integer.parseInt(kv.getOrDefault("max_lookahead", "4")),
                Boolean.parseBoolean(require(kv, "prefetch", file)), Long.parseLong(require(kv, "link", file)));
        }
        catch (final IllegalArgumentException ex)
        {
            throw new IOException(file + " line 2: " + ex.getMessage());
        }
        final int n = lines.size() - 2;
        final long[] at = new long[n];
        final int[] layers = new int[n];
        final byte[] outcomes = new byte[n];
        final long[] waited = new long[n];
        int count = 0;
        for (int i = 2; i < lines.size(); i++)
        {
            final String line = lines.get(i).trim();
            if (line.isEmpty())
            {
                continue;
            }
            final String[] f = line.split("\\s+");
            try
            {
                if (f.length != 4 || f[2].length() != 1 || "hld".indexOf(f[2].charAt(0)) < 0)
                {
                    throw new IllegalArgumentException("expected 'nanos layer h|l|d waited'");
                }
                at[count] = Long.parseLong(f[0]);
                layers[count] = Integer.parseInt(f[1]);
                if (layers[count] < 0 || layers[count] >= settings.layers())
                {
                    throw new IllegalArgumentException("layer " + layers[count] + " outside 0.." + (settings.layers() - 1));
                }
                outcomes[count] = (byte)f[2].charAt(0);
                waited[count] = Long.parseLong(f[3]);
                count++;
            }
            catch (final IllegalArgumentException ex)
            {
                throw new IOException(file + " line " + (i + 1) + ": " + ex.getMessage());
            }
        }
        return new LayerTrace(settings, Arrays.copyOf(at, count), Arrays.copyOf(layers, count),
            Arrays.copyOf(outcomes, count), Arrays.copyOf(waited, count));
    }

    private static String require(final Map<String, String> kv, final String key, final Path file) throws IOException
    {
        final String v = kv.get(key);
        if (v == null)
        {
            throw new IOException(file + " line 2: no '" + key + "='");
        }
        return v;
    }

    /**
     * Collects a trace as a node runs; thread-safe, bounded ({@code max} accesses, the rest counted as dropped).
     */
    public static final class Recorder
    {
        private final int max;
        private long start = -1;
        private long[] at = new long[1024];
        private int[] layers = new int[1024];
        private byte[] outcomes = new byte[1024];
        private long[] waits = new long[1024];
        private int n;
        private long dropped;

        public Recorder(final int max)
        {
            this.max = max;
        }

        public synchronized void access(final long nowNanos, final int layer, final byte outcome, final long waited)
        {
            if (n == max)
            {
                dropped++;
                return;
            }
            if (start < 0)
            {
                start = nowNanos;
            }
            if (n == at.length)
            {
                final int size = Math.min(max, 2 * n);
                at = Arrays.copyOf(at, size);
                layers = Arrays.copyOf(layers, size);
                outcomes = Arrays.copyOf(outcomes, size);
                waits = Arrays.copyOf(waits, size);
            }
            at[n] = nowNanos - start;
            layers[n] = layer;
            outcomes[n] = outcome;
            waits[n] = waited;
            n++;
        }

        public synchronized long dropped()
        {
            return dropped;
        }

        public synchronized LayerTrace trace(final Settings settings)
        {
            return new LayerTrace(settings, Arrays.copyOf(at, n), Arrays.copyOf(layers, n), Arrays.copyOf(outcomes, n),
                Arrays.copyOf(waits, n));
        }
    }
}
