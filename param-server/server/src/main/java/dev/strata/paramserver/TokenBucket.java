package dev.strata.paramserver;

/**
 * A byte-rate cap: {@code bytesPerSecond} tokens accrue continuously up to a burst of {@code burstBytes}; sending
 * n bytes takes n tokens, and is refused (take nothing, try later) while fewer are there. The block server uses
 * one over everything it sends, to stand for a network link of that bandwidth on a single host. Not thread-safe:
 * the server's agent thread only.
 */
final class TokenBucket
{
    private final double bytesPerNano;
    private final long burstBytes;
    private double tokens;
    private long lastNanos;

    /**
     * @param bytesPerSecond the rate; must be positive.
     * @param burstBytes     the most that may go at once after an idle period (at least one message).
     * @param nowNanos       the clock's reading now; the bucket starts full.
     */
    TokenBucket(final long bytesPerSecond, final long burstBytes, final long nowNanos)
    {
        if (bytesPerSecond <= 0 || burstBytes <= 0)
        {
            throw new IllegalArgumentException("invalid link cap: bytesPerSecond=" + bytesPerSecond +
                " burstBytes=" + burstBytes);
        }
        this.bytesPerNano = bytesPerSecond / 1e9;
        this.burstBytes = burstBytes;
        this.tokens = burstBytes;
        this.lastNanos = nowNanos;
    }

    /** Takes {@code bytes} tokens if there are that many at {@code nowNanos}; false (nothing taken) otherwise. */
    boolean tryTake(final long bytes, final long nowNanos)
    {
        if (nowNanos > lastNanos)
        {
            tokens = Math.min(burstBytes, tokens + (nowNanos - lastNanos) * bytesPerNano);
            lastNanos = nowNanos;
        }
        if (tokens < bytes)
        {
            return false;
        }
        tokens -= bytes;
        return true;
    }
}
