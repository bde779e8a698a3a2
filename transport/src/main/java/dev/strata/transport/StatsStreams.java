package dev.strata.transport;

/**
 * Aeron streams of the node statistics path: nodes send {@code NodeStats} to the service's block-server channels
 * (IPC and its UDP endpoint) on {@link #STATS_STREAM}, next to the block requests' stream; the service pushes
 * {@code NodeSettings} back on the channel and stream each node names in its report.
 */
public final class StatsStreams
{
    /** The stream the service's statistics collector listens on (IPC and UDP). */
    public static final int STATS_STREAM = 1002;

    private StatsStreams()
    {
    }
}
