package dev.strata.compute.tensor;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of worker threads for data-parallel loops over row ranges, built for many short tasks (a decode
 * step issues hundreds): workers spin briefly on a generation counter before parking, and the calling thread
 * takes a share of the work itself. {@code threads = 1} runs everything on the caller.
 */
public final class ThreadPool implements AutoCloseable
{
    /** A task over the half-open range {@code [start, end)}. */
    @FunctionalInterface
    public interface RangeTask
    {
        void run(int start, int end);
    }

    /**
     * Spins (about 25 ns each here) before a waiting thread parks or yields: long enough to bridge the serial gaps
     * between a token's hundreds of loops, short enough not to hold a core through a streaming fetch stall, when
     * the block server and the fetcher need it.
     */
    private static final int SPIN_LIMIT = 20_000;

    private final int threads;
    private final Thread[] workers;
    private final AtomicInteger pending = new AtomicInteger();
    private final AtomicInteger nextChunk = new AtomicInteger();
    private volatile int chunks;
    private volatile int generation;
    private volatile boolean closed;
    private volatile RangeTask task;
    private volatile int total;
    private volatile Throwable failure;

    public ThreadPool(final int threads)
    {
        if (threads < 1)
        {
            throw new IllegalArgumentException("invalid threads=" + threads + " (must be >= 1)");
        }
        this.threads = threads;
        this.workers = new Thread[threads - 1];
        for (int i = 0; i < workers.length; i++)
        {
            final int index = i + 1;
            workers[i] = Thread.ofPlatform().daemon().name("strata-compute-" + index).start(() -> workLoop(index));
        }
    }

    public int threads()
    {
        return threads;
    }

    /**
     * Runs {@code task} over {@code [0, n)} split into contiguous chunks that the threads claim in turn, and
     * returns when all are done. Not reentrant: call from one thread at a time.
     */
    public void parallelFor(final int n, final RangeTask task)
    {
        parallelFor(n, 1, task);
    }

    /**
     * As {@link #parallelFor(int, RangeTask)} with {@code chunksPerThread} chunks per thread: 1 gives each
     * thread one contiguous share (best for short, even loops such as decode's matrix-vector products); more
     * chunks even out uneven or long loops (prefill), at the cost of an atomic claim per chunk.
     */
    public void parallelFor(final int n, final int chunksPerThread, final RangeTask task)
    {
        if (threads == 1 || n < 2)
        {
            task.run(0, n);
            return;
        }
        this.task = task;
        this.total = n;
        this.chunks = Math.min(n, threads * Math.max(1, chunksPerThread));
        this.failure = null;
        nextChunk.set(0);
        pending.set(workers.length);
        generation++;
        for (final Thread w : workers)
        {
            LockSupport.unpark(w);
        }
        Throwable callerFailure = null;
        try
        {
            runChunks(task, n);
        }
        catch (final Throwable t)
        {
            // still wait for the workers: returning now would let them run this task into the next loop
            callerFailure = t;
        }
        int spins = 0;
        while (pending.get() != 0)
        {
            if (++spins > SPIN_LIMIT)
            {
                Thread.yield();
            }
            else
            {
                Thread.onSpinWait();
            }
        }
        this.task = null;
        if (callerFailure instanceof RuntimeException ex)
        {
            throw ex;
        }
        if (callerFailure instanceof Error err)
        {
            throw err;
        }
        if (callerFailure != null)
        {
            throw new IllegalStateException("compute task failed: " + callerFailure, callerFailure);
        }
        final Throwable t = failure;
        if (t != null)
        {
            throw new IllegalStateException("compute worker failed: " + t, t);
        }
    }

    /**
     * Claims chunks until none is left: a thread slowed by the OS or the JIT takes fewer chunks instead of
     * holding everyone at the barrier.
     */
    private void runChunks(final RangeTask task, final int n)
    {
        final int count = chunks;
        int index;
        while ((index = nextChunk.getAndIncrement()) < count)
        {
            final int start = (int)((long)n * index / count);
            final int end = (int)((long)n * (index + 1) / count);
            if (start < end)
            {
                task.run(start, end);
            }
        }
    }

    private void workLoop(final int index)
    {
        int seen = 0;
        while (!closed)
        {
            int spins = 0;
            while (generation == seen && !closed)
            {
                if (++spins < SPIN_LIMIT)
                {
                    Thread.onSpinWait();
                }
                else
                {
                    LockSupport.parkNanos(this, 1_000_000L);
                }
            }
            if (closed)
            {
                return;
            }
            seen = generation;
            try
            {
                runChunks(task, total);
            }
            catch (final Throwable t)
            {
                failure = t;
            }
            finally
            {
                pending.decrementAndGet();
            }
        }
    }

    @Override
    public void close()
    {
        closed = true;
        for (final Thread w : workers)
        {
            LockSupport.unpark(w);
        }
    }
}
