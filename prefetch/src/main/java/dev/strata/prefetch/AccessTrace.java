package dev.strata.prefetch;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.List;

/**
 * A recorded access trace: the sequence of units (for example expert units {@code layer * experts + expert}) a
 * node used, in order, to train a {@link TransitionPredictor} before the first request instead of learning from
 * scratch. The file is text, so it can be read and edited:
 * <pre>
 * strata-trace 1 units=96
 * 3 5 9 14 ...
 * </pre>
 * one header line, then the unit indices separated by white space (any number per line).
 *
 * @param units how many units the indices range over ({@code 0 .. units-1}).
 * @param trace the unit indices, oldest first.
 */
public record AccessTrace(int units, int[] trace)
{
    private static final String MAGIC = "strata-trace 1 units=";
    private static final int PER_LINE = 32;

    public AccessTrace
    {
        if (units < 1)
        {
            throw new IllegalArgumentException("a trace needs at least one unit, not " + units);
        }
        for (int i = 0; i < trace.length; i++)
        {
            if (trace[i] < 0 || trace[i] >= units)
            {
                throw new IllegalArgumentException("trace entry " + i + " is unit " + trace[i] + ", outside 0.." +
                    (units - 1));
            }
        }
    }

    /** Writes the trace (to a temporary file first, then renamed over {@code file}). */
    public void write(final Path file) throws IOException
    {
        final Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.US_ASCII))
        {
            out.write(MAGIC + units);
            out.newLine();
            for (int i = 0; i < trace.length; i++)
            {
                out.write(Integer.toString(trace[i]));
                out.write(i % PER_LINE == PER_LINE - 1 || i == trace.length - 1 ? "\n" : " ");
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * Reads a trace written by {@link #write}.
     *
     * @throws IOException naming the file and the line for a missing or wrong header, a value that is not a unit
     *                     index, or a unit outside the header's range.
     */
    public static AccessTrace read(final Path file) throws IOException
    {
        final List<String> lines = Files.readAllLines(file, StandardCharsets.US_ASCII);
        if (lines.isEmpty() || !lines.getFirst().startsWith(MAGIC))
        {
            throw new IOException(file + " is not an access trace (its first line must be '" + MAGIC + "N')");
        }
        final int units;
        try
        {
            units = Integer.parseInt(lines.getFirst().substring(MAGIC.length()).trim());
        }
        catch (final NumberFormatException ex)
        {
            throw new IOException(file + ": bad unit count in '" + lines.getFirst() + "'");
        }
        int[] trace = new int[1024];
        int n = 0;
        for (int l = 1; l < lines.size(); l++)
        {
            for (final String token : lines.get(l).trim().split("\\s+"))
            {
                if (token.isEmpty())
                {
                    continue;
                }
                final int unit;
                try
                {
                    unit = Integer.parseInt(token);
                }
                catch (final NumberFormatException ex)
                {
                    throw new IOException(file + " line " + (l + 1) + ": '" + token + "' is not a unit index");
                }
                if (unit < 0 || unit >= units)
                {
                    throw new IOException(file + " line " + (l + 1) + ": unit " + unit + " is outside 0.." +
                        (units - 1));
                }
                if (n == trace.length)
                {
                    trace = Arrays.copyOf(trace, 2 * n);
                }
                trace[n++] = unit;
            }
        }
        return new AccessTrace(units, Arrays.copyOf(trace, n));
    }
}
