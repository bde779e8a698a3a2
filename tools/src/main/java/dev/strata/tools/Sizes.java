package dev.strata.tools;

import java.util.Locale;

/** Byte sizes for humans: {@code 512M}, {@code 1.5G} in, {@code 24.0 MiB} out. */
final class Sizes
{
    private Sizes()
    {
    }

    /** Parses a byte count with an optional K, M, G or T suffix (powers of 1024). */
    static long parse(final String text)
    {
        final String t = text.strip().toUpperCase(Locale.ROOT).replaceAll("I?B$", "");
        long unit = 1;
        String digits = t;
        if (!t.isEmpty() && "KMGT".indexOf(t.charAt(t.length() - 1)) >= 0)
        {
            unit = 1L << (10 * ("KMGT".indexOf(t.charAt(t.length() - 1)) + 1));
            digits = t.substring(0, t.length() - 1);
        }
        try
        {
            final double v = Double.parseDouble(digits);
            if (v <= 0 || Double.isNaN(v) || v * unit > Long.MAX_VALUE)
            {
                throw new NumberFormatException();
            }
            return (long)(v * unit);
        }
        catch (final NumberFormatException ex)
        {
            throw new IllegalArgumentException("invalid size '" + text + "' (for example 512M, 2G)");
        }
    }

    static String format(final long bytes)
    {
        if (bytes < 1024)
        {
            return bytes + " B";
        }
        final String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1)
        {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
