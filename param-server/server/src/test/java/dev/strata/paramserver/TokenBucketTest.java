package dev.strata.paramserver;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The link cap's bucket, on a clock the test moves. */
class TokenBucketTest
{
    @Test
    void shouldLetTheBurstGoThenTheRateAndNoMore()
    {
        final long t0 = 5_000_000_000L;
        final TokenBucket b = new TokenBucket(1_000_000_000L, 100_000, t0); // 1 GB/s: 1 byte per ns
        assertTrue(b.tryTake(60_000, t0));
        assertFalse(b.tryTake(60_000, t0), "40,000 left of the burst");
        assertTrue(b.tryTake(60_000, t0 + 20_000), "20 us refill 20,000 bytes");
        assertFalse(b.tryTake(1, t0 + 20_000), "nothing left");
        assertTrue(b.tryTake(100_000, t0 + 1_000_000_000L), "a long idle refills to the burst");
        assertFalse(b.tryTake(1, t0 + 1_000_000_000L), "and no more than the burst");
    }

    @Test
    void shouldMoveAtTheRateOverAManyChunkTransfer()
    {
        final long rate = 250_000_000L; // 0.25 GB/s
        final int chunk = 61_440;
        long now = 0;
        final long burst = rate / 1000; // 1 ms, as the block server sets it
        final TokenBucket b = new TokenBucket(rate, burst, now);
        long sent = 0;
        while (sent < 100L * chunk)
        {
            if (b.tryTake(chunk, now))
            {
                sent += chunk;
            }
            now += 1_000; // the agent's duty cycle, every microsecond
        }
        final long expected = (100L * chunk - burst) * 1_000_000_000L / rate; // the burst went at once
        assertTrue(Math.abs(now - expected) <= 3_000, "100 chunks in " + now + " ns, the rate says " + expected);
    }

    @Test
    void shouldRefuseANonsenseCap()
    {
        assertThrows(IllegalArgumentException.class, () -> new TokenBucket(0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new TokenBucket(1, 0, 0));
    }
}
