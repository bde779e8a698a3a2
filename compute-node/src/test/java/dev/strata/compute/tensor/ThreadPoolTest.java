package dev.strata.compute.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

@Timeout(value = 60, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ThreadPoolTest
{
    private static boolean isWorker()
    {
        return Thread.currentThread().getName().startsWith("strata-compute-");
    }

    private static void assertCausedBy(final Throwable expected, final Throwable thrown)
    {
        for (Throwable t = thrown; t != null; t = t.getCause())
        {
            if (t == expected)
            {
                return;
            }
        }
        fail("expected " + expected + " to be thrown or be the cause, got " + thrown);
    }

    private static void assertEachIndexOnce(final ThreadPool pool, final int n)
    {
        assertEachIndexOnce(pool, n, -1);
    }

    /** {@code chunksPerThread < 0}: the two-argument parallelFor. */
    private static void assertEachIndexOnce(final ThreadPool pool, final int n, final int chunksPerThread)
    {
        final AtomicIntegerArray counts = new AtomicIntegerArray(Math.max(1, n));
        final ThreadPool.RangeTask task = (start, end) ->
        {
            assertTrue(0 <= start && start <= end && end <= n && (start < end || n == 0), "range [" + start + ", " + end + ") of " + n);
            for (int i = start; i < end; i++)
            {
                counts.incrementAndGet(i);
            }
        };
        if (chunksPerThread < 0)
        {
            pool.parallelFor(n, task);
        }
        else
        {
            pool.parallelFor(n, chunksPerThread, task);
        }
        for (int i = 0; i < n; i++)
        {
            assertEquals(1, counts.get(i), "index " + i + " of " + n + " with " + pool.threads() + " threads, " +
                chunksPerThread + " chunks per thread");
        }
    }

    @Test
    void shouldRejectFewerThanOneThread()
    {
        final IllegalArgumentException zero = assertThrows(IllegalArgumentException.class, () -> new ThreadPool(0));
        assertTrue(zero.getMessage().contains("threads=0"), zero.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new ThreadPool(-3));
    }

    @Test
    void shouldRunEachIndexExactlyOnce()
    {
        for (final int threads : new int[]{1, 2, 3})
        {
            try (ThreadPool pool = new ThreadPool(threads))
            {
                assertEquals(threads, pool.threads());
                for (int round = 0; round < 3; round++)
                {
                    for (final int n : new int[]{0, 1, 2, 3, 7, 8, 100, 1001})
                    {
                        assertEachIndexOnce(pool, n);
                        for (final int chunksPerThread : new int[]{0, 1, 4, 1000})
                        {
                            assertEachIndexOnce(pool, n, chunksPerThread);
                        }
                    }
                }
            }
        }
    }

    @Test
    void shouldPropagateAnExceptionThrownOnTheCallingThread()
    {
        final ArithmeticException boom = new ArithmeticException("boom");
        try (ThreadPool pool = new ThreadPool(1))
        {
            final RuntimeException thrown = assertThrows(RuntimeException.class, () -> pool.parallelFor(10, (s, e) ->
            {
                throw boom;
            }));
            assertCausedBy(boom, thrown);
            assertEachIndexOnce(pool, 10);
        }
    }

    @Test
    void shouldPropagateAnExceptionThrownOnAWorkerThread() throws Exception
    {
        final IllegalStateException boom = new IllegalStateException("worker boom");
        try (ThreadPool pool = new ThreadPool(2))
        {
            final CountDownLatch workerRan = new CountDownLatch(1);
            final RuntimeException thrown = assertThrows(RuntimeException.class, () -> pool.parallelFor(100, (s, e) ->
            {
                if (isWorker())
                {
                    workerRan.countDown();
                    throw boom;
                }
                try
                {
                    // hold the caller until a worker has taken a chunk, so the worker certainly throws
                    assertTrue(workerRan.await(30, TimeUnit.SECONDS), "no worker took a chunk");
                }
                catch (final InterruptedException ex)
                {
                    throw new RuntimeException(ex);
                }
            }));
            assertCausedBy(boom, thrown);
            assertTrue(thrown.getMessage().contains("worker boom"), thrown.getMessage());
            for (int round = 0; round < 20; round++)
            {
                assertEachIndexOnce(pool, 100);
            }
        }
    }

    @Test
    void shouldNotReturnWhileWorkersStillRunWhenTheCallersChunkThrows() throws Exception
    {
        final AtomicInteger running = new AtomicInteger();
        try (ThreadPool pool = new ThreadPool(2))
        {
            final CountDownLatch workerStarted = new CountDownLatch(1);
            final IllegalArgumentException boom = new IllegalArgumentException("caller boom");
            // two chunks: the caller takes one, waits until the worker is inside the other, then throws
            final RuntimeException thrown = assertThrows(RuntimeException.class, () -> pool.parallelFor(2, (s, e) ->
            {
                if (isWorker())
                {
                    running.incrementAndGet();
                    workerStarted.countDown();
                    try
                    {
                        Thread.sleep(300);
                    }
                    catch (final InterruptedException ex)
                    {
                        Thread.currentThread().interrupt();
                    }
                    running.decrementAndGet();
                    return;
                }
                try
                {
                    assertTrue(workerStarted.await(30, TimeUnit.SECONDS), "no worker took a chunk");
                }
                catch (final InterruptedException ex)
                {
                    throw new RuntimeException(ex);
                }
                throw boom;
            }));
            assertEquals(0, running.get(), "parallelFor returned while a worker was still running the failed task");
            assertCausedBy(boom, thrown);
            // the next loop must not be disturbed by a straggler of the failed one
            for (int round = 0; round < 20; round++)
            {
                assertEachIndexOnce(pool, 64);
            }
        }
    }

    @Test
    void shouldStopNoLaterThanTheOtherThreadsWhenAChunkedLoopFails()
    {
        try (ThreadPool pool = new ThreadPool(2))
        {
            for (int round = 0; round < 20; round++)
            {
                final AtomicInteger running = new AtomicInteger();
                final int failAt = round % 3 == 0 ? 0 : round * 13;
                final RuntimeException thrown = assertThrows(RuntimeException.class,
                    () -> pool.parallelFor(400, 4, (s, e) ->
                    {
                        running.incrementAndGet();
                        try
                        {
                            if (s <= failAt && failAt < e)
                            {
                                throw new ArithmeticException("chunk " + s);
                            }
                            Thread.onSpinWait();
                        }
                        finally
                        {
                            running.decrementAndGet();
                        }
                    }));
                assertTrue(thrown instanceof ArithmeticException || thrown.getCause() instanceof ArithmeticException,
                    thrown.toString());
                assertEquals(0, running.get(), "a chunk was still running after parallelFor threw");
                assertEachIndexOnce(pool, 400, 4);
            }
        }
    }

    @Test
    void shouldRunBothHalvesOnDifferentThreadsWhenTheyWait() throws Exception
    {
        try (ThreadPool pool = new ThreadPool(2))
        {
            final CountDownLatch both = new CountDownLatch(2);
            final AtomicInteger met = new AtomicInteger();
            pool.parallelFor(2, (s, e) ->
            {
                both.countDown();
                try
                {
                    if (both.await(30, TimeUnit.SECONDS))
                    {
                        met.incrementAndGet();
                    }
                }
                catch (final InterruptedException ex)
                {
                    throw new RuntimeException(ex);
                }
            });
            assertEquals(2, met.get(), "both chunks should have run concurrently");
        }
    }

    /**
     * One pool per process: loops from several caller threads each visit every index once, and take turns, so
     * that no more threads than the pool has ever run tasks at once (two callers each running their own loops on a
     * two-thread pool would otherwise put three threads on two cores).
     */
    @Test
    void shouldLetSeveralCallersShareThePoolWithoutOversubscribing() throws Exception
    {
        try (ThreadPool pool = new ThreadPool(2))
        {
            final java.util.concurrent.atomic.AtomicInteger active = new java.util.concurrent.atomic.AtomicInteger();
            final java.util.concurrent.atomic.AtomicInteger peak = new java.util.concurrent.atomic.AtomicInteger();
            final java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(3);
            final java.util.List<Thread> callers = new java.util.ArrayList<>();
            final java.util.concurrent.ConcurrentLinkedQueue<Throwable> failures =
                new java.util.concurrent.ConcurrentLinkedQueue<>();
            for (int c = 0; c < 3; c++)
            {
                callers.add(Thread.ofPlatform().start(() ->
                {
                    try
                    {
                        start.await();
                        for (int loop = 0; loop < 300; loop++)
                        {
                            final int n = 64;
                            final java.util.concurrent.atomic.AtomicIntegerArray seen =
                                new java.util.concurrent.atomic.AtomicIntegerArray(n);
                            pool.parallelFor(n, 4, (s, e) ->
                            {
                                final int now = active.incrementAndGet();
                                peak.accumulateAndGet(now, Math::max);
                                for (int i = s; i < e; i++)
                                {
                                    seen.incrementAndGet(i);
                                }
                                final long until = System.nanoTime() + 20_000;
                                while (System.nanoTime() < until)
                                {
                                    Thread.onSpinWait();
                                }
                                active.decrementAndGet();
                            });
                            for (int i = 0; i < n; i++)
                            {
                                assertEquals(1, seen.get(i), "index " + i);
                            }
                        }
                    }
                    catch (final Throwable t)
                    {
                        failures.add(t);
                    }
                }));
            }
            for (final Thread t : callers)
            {
                t.join();
            }
            assertTrue(failures.isEmpty(), () -> "failures: " + failures);
            assertTrue(peak.get() <= 2, "threads running tasks at once: " + peak.get());
        }
    }
}
