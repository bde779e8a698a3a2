package dev.strata.tools;

import java.io.PrintWriter;
import java.util.Locale;

/**
 * An upload progress bar on stderr: bytes done of total, rate and ETA. Redrawn in place on a terminal at most
 * five times a second; elsewhere (logs, pipes) one line per quarter.
 */
final class ProgressBar
{
    private final PrintWriter err;
    private final boolean enabled;
    private final boolean terminal = System.console() != null;
    private final long start = System.nanoTime();
    private long lastDraw;
    private int lastQuarter = -1;
    private long done;
    private long total;
    private boolean drawn;

    ProgressBar(final PrintWriter err, final boolean enabled)
    {
        this.err = err;
        this.enabled = enabled;
    }

    void update(final long bytesDone, final long bytesTotal, final int blocksDone, final int blocksTotal)
    {
        done = bytesDone;
        total = bytesTotal;
        if (!enabled || total == 0)
        {
            return;
        }
        final long now = System.nanoTime();
        final int quarter = (int)(4 * done / total);
        if (terminal ? now - lastDraw > 200_000_000L || done == total : quarter != lastQuarter)
        {
            lastDraw = now;
            lastQuarter = quarter;
            draw(now, blocksDone, blocksTotal);
        }
    }

    private void draw(final long now, final int blocksDone, final int blocksTotal)
    {
        final double seconds = Math.max(1e-9, (now - start) / 1e9);
        final double rate = done / seconds;
        final int width = 30;
        final int filled = (int)(width * done / Math.max(1, total));
        final String eta = rate > 0 && done < total ? String.format(Locale.ROOT, "%.0fs", (total - done) / rate) : "0s";
        final String line = String.format(Locale.ROOT, "[%s%s] %s / %s  %s/s  ETA %s  (%d/%d blocks)",
            "#".repeat(filled), " ".repeat(width - filled), Sizes.format(done), Sizes.format(total),
            Sizes.format((long)rate), eta, blocksDone, blocksTotal);
        err.print(terminal ? "\r" + line : line + System.lineSeparator());
        err.flush();
        drawn = true;
    }

    void finish()
    {
        if (drawn && terminal)
        {
            err.println();
        }
        err.flush();
    }
}
