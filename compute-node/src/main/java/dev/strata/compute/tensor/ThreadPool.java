package dev.strata.compute.tensor;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of worker threads for data-parallel loops over row ranges, built for many short tasks (a decode
 * step issues hundreds): workers spin briefly on a generation counter before parking, and the calling thread
 * takes a share of the work itself. {@code threads = 1} runs everything on the caller.
 * <p>
 * One pool serves a whole process: several callers (engines, a prefill and a decode worker) may call
 * {@link #parallelFor} from their own threads, and their loops take turns on the workers instead of running on
 * more threads than there are cores. A loop's task must not itself call {@code parallelFor}.
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

    /**
     * One {@code parallelFor}: its task, and the counters its chunks are claimed and completed with. A fresh job
     * per loop, so that a worker that wakes late can only find an old job with nothing left to claim, never run a
     * chunk of a newer loop with the bounds of an older one.
     */
    private static final class Job
    {
        final RangeTask task;
        final int n;
        final int chunks;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable failure;

        Job(final RangeTask task, final int n, final int chunks)
        {
            this.task = task;
            this.n = n;
            this.chunks = chunks;
        }

        /**
         * Claims and runs chunks until none is left. A failed chunk counts as done, and after a failure the chunks
         * left are claimed without being run, so that the loop ends as soon as the chunks already running do.
         */
        void runChunks()
        {
            int index;
            while ((index = next.getAndIncrement()) < chunks)
            {
                try
                {
                    if (failure != null)
                    {
                        continue;
                    }
                    final int start = (int)((long)n * index / chunks);
                    final int end = (int)((long)n * (index + 1) / chunks);
                    if (start < end)
                    {
                        task.run(start, end);
                    }
                }
                catch (final Throwable t)
                {
                    failure = t;
                }
                finally
                {
                    done.incrementAndGet();
                }
            }
        }
    }

    private final int threads;
    private final Thread[] workers;
    private volatile Job job;
    private volatile boolean closed;
    /** Held by the caller of a loop while it runs: one loop at a time on the workers. */
    private final ReentrantLock loop = new ReentrantLock();

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
            workers[i] = Thread.ofPlatform().daemon().name("strata-compute-" + index).start(this::workLoop);
        }
    }

    public int threads()
    {
        return threads;
    }

    /**
     * Runs {@code task} over {@code [0, n)} split into contiguous chunks that the threads claim in turn, and
     * returns when all are done. Callers on other threads wait for their turn.
     */
    public void parallelFor(final int n, final RangeTask task)
    {
        parallelFor(n, 1, task);
    }

    /**
     * As {@link #parallelFor(int, RangeTask)} with {@code chunksPerThread} chunks per thread: 1 gives each
     * thread one contiguous share (best for short, even loops such as decode's matrix-vector products); more
     * chunks even out uneven or long loops (prefill), at the cost of an atomic claim per chunk.
     * <p>
     * The caller waits for the chunks, not for the workers: a worker the OS has not scheduled yet (the machine's
     * cores are shared with the block server and the fetcher while weights stream) claims nothing, and the caller
     * runs its share instead of waiting for it to wake.
     */
    public void parallelFor(final int n, final int chunksPerThread, final RangeTask task)
    {
        if (threads == 1 || n < 2)
        {
            task.run(0, n);
            return;
        }
        loop.lock();
        try
        {
            runLoop(task, n, chunksPerThread);
        }
        finally
        {
            loop.unlock();
        }
    }

    private void runLoop(final RangeTask task, final int n, final int chunksPerThread)
    {
        final Job j = new Job(task, n, Math.min(n, threads * Math.max(1, chunksPerThread)));
        job = j;
        for (final Thread w : workers)
        {
            LockSupport.unpark(w);
        }
        j.runChunks();
        int spins = 0;
        while (j.done.get() != j.chunks)
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
        final Throwable t = j.failure;
        if (t instanceof RuntimeException ex)
        {
            throw ex;
        }
        if (t instanceof Error err)
        {
            throw err;
        }
        if (t != null)
        {
            throw new IllegalStateException("compute task failed: " + t, t);
        }
    }

    private void workLoop()
    {
        Job seen = null;
        while (!closed)
        {
            int spins = 0;
            Job j;
            while ((j = job) == seen && !closed)
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
            seen = j;
            j.runChunks();
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
