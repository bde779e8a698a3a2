package dev.strata.transport;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;

/**
 * Every setting of a {@link Transport}, with defaults; {@link #conclude()} validates once and names the bad
 * value. Property names and defaults sit together here, and nothing else reads system properties.
 */
public final class TransportContext
{
    public static final String AERON_DIR_PROP = "strata.aeron.dir";
    public static final String EMBEDDED_DRIVER_PROP = "strata.aeron.embedded";
    public static final String THREADING_PROP = "strata.aeron.threading";
    public static final String IPC_CHANNEL = "aeron:ipc";
    /** The default driver directory's name: this prefix, the owner's pid, a dash and a random part. */
    public static final String DIR_PREFIX = "strata-aeron-";

    private String aeronDirectory = System.getProperty(AERON_DIR_PROP);
    private boolean embeddedDriver = Boolean.parseBoolean(System.getProperty(EMBEDDED_DRIVER_PROP, "true"));
    /**
     * 30 s, not Aeron's 10: on a 2-core machine carrying a node set's start beside a serving one, a parameter
     * service's client conductor went unserviced for 10.1-11.3 s, twice in two tries, and the service lost its Aeron
     * client (and so its block server) for good. The embedded driver's client liveness follows it.
     */
    private long driverTimeoutMs = 30_000;
    private io.aeron.driver.ThreadingMode threadingMode = io.aeron.driver.ThreadingMode.valueOf(
        System.getProperty(THREADING_PROP, "SHARED_NETWORK"));
    private boolean concluded;

    /**
     * The media driver's directory; by default a fresh one under /dev/shm when it exists (else the temp dir), named
     * for this process ({@code strata-aeron-<pid>-<random>}), after removing those of processes that are gone.
     */
    public TransportContext aeronDirectory(final String dir)
    {
        this.aeronDirectory = dir;
        return this;
    }

    public String aeronDirectory()
    {
        return aeronDirectory;
    }

    /** Whether to start a media driver inside this process (the default) or use an external one. */
    public TransportContext embeddedDriver(final boolean embedded)
    {
        this.embeddedDriver = embedded;
        return this;
    }

    public boolean embeddedDriver()
    {
        return embeddedDriver;
    }

    /**
     * The embedded driver's threads. Default {@code SHARED_NETWORK}: sender and receiver on one thread, the
     * conductor on another; measured against {@code SHARED} (one thread) UDP 4 MiB pulls went from 1.64 to
     * 1.8-2.1 GB/s on 2 cores, and {@code DEDICATED} (three threads) was no better.
     */
    public TransportContext threadingMode(final io.aeron.driver.ThreadingMode mode)
    {
        this.threadingMode = mode;
        return this;
    }

    public io.aeron.driver.ThreadingMode threadingMode()
    {
        return threadingMode;
    }

    /** How long the client waits for the driver before giving up. */
    public TransportContext driverTimeoutMs(final long ms)
    {
        this.driverTimeoutMs = ms;
        return this;
    }

    public long driverTimeoutMs()
    {
        return driverTimeoutMs;
    }

    /** Validates and fills defaults; called by {@link Transport#launch}. */
    public TransportContext conclude()
    {
        if (concluded)
        {
            throw new IllegalStateException("context already concluded");
        }
        if (driverTimeoutMs <= 0)
        {
            throw new IllegalArgumentException("invalid driverTimeoutMs=" + driverTimeoutMs);
        }
        if (aeronDirectory == null)
        {
            if (!embeddedDriver)
            {
                throw new IllegalArgumentException("an external media driver needs aeronDirectory (or -D" +
                    AERON_DIR_PROP + ")");
            }
            final Path shm = Path.of("/dev/shm");
            final String base = Files.isDirectory(shm) ? shm.toString() : System.getProperty("java.io.tmpdir");
            removeStaleDirectories(Path.of(base));
            aeronDirectory = base + File.separator + DIR_PREFIX + ProcessHandle.current().pid() + "-" +
                UUID.randomUUID().toString().substring(0, 8);
        }
        concluded = true;
        return this;
    }

    /**
     * Deletes the default-named driver directories under {@code base} whose process is gone: a process killed with
     * SIGKILL cannot delete its own (tens of MB of RAM each under /dev/shm). A directory is named
     * {@code strata-aeron-<pid>-<random>}, so its owner is known: it is removed when that process no longer runs.
     * Directories of the older {@code strata-aeron-<uuid>} form (no owner named) are removed only when the
     * directory and its {@code cnc.dat} were last modified over a minute ago and the driver's heartbeat in it is
     * older than 10 s (a live driver beats every second or so, even on a loaded machine).
     *
     * @return directories removed.
     */
    public static int removeStaleDirectories(final Path base)
    {
        int removed = 0;
        final File[] entries = base.toFile().listFiles((d, name) -> name.startsWith(DIR_PREFIX));
        if (entries == null)
        {
            return 0;
        }
        for (final File dir : entries)
        {
            final String rest = dir.getName().substring(DIR_PREFIX.length());
            final int dash = rest.indexOf('-');
            boolean stale;
            if (dash > 0 && rest.substring(0, dash).chars().allMatch(Character::isDigit))
            {
                final long pid = Long.parseLong(rest.substring(0, dash));
                stale = ProcessHandle.of(pid).map(ph -> !ph.isAlive()).orElse(true);
            }
            else
            {
                final long age = System.currentTimeMillis() - dir.lastModified();
                final File cnc = new File(dir, "cnc.dat");
                stale = age > 60_000 && (!cnc.exists() || System.currentTimeMillis() - cnc.lastModified() > 60_000 &&
                    !io.aeron.CommonContext.isDriverActive(dir, 10_000, msg -> { }));
            }
            if (stale)
            {
                org.agrona.IoUtil.delete(dir, true);
                removed += dir.exists() ? 0 : 1;
            }
        }
        return removed;
    }

    /** A UDP channel on {@code host:port} (for example {@code localhost:40123}). */
    public static String udpChannel(final String host, final int port)
    {
        if (port <= 0 || port > 65_535)
        {
            throw new IllegalArgumentException("invalid port=" + port);
        }
        return "aeron:udp?endpoint=" + host + ":" + port;
    }
}
