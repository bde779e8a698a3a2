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

    private String aeronDirectory = System.getProperty(AERON_DIR_PROP);
    private boolean embeddedDriver = Boolean.parseBoolean(System.getProperty(EMBEDDED_DRIVER_PROP, "true"));
    private long driverTimeoutMs = 10_000;
    private io.aeron.driver.ThreadingMode threadingMode = io.aeron.driver.ThreadingMode.valueOf(
        System.getProperty(THREADING_PROP, "SHARED_NETWORK"));
    private boolean concluded;

    /** The media driver's directory; by default a fresh one under /dev/shm when it exists (else the temp dir). */
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
            aeronDirectory = base + File.separator + "strata-aeron-" + UUID.randomUUID();
        }
        concluded = true;
        return this;
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
