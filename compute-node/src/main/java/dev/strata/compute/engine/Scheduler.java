package dev.strata.compute.engine;

import dev.strata.compute.model.ForwardBatch;
import dev.strata.compute.model.KvBlockPool;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntPredicate;

/**
 * Plans the engine's steps: {@link #schedule()} picks the rows of the next step, the engine runs them, and
 * {@link #update} samples, stops and frees. Plain records between the three.
 * <ul>
 * <li>Continuous batching: sequences join and leave at every step; first come, first served.</li>
 * <li>Chunked prefill: at most {@code maxPrefillTokens} prompt rows and {@code maxPrefillBatchSize} prompts per
 * step, a long prompt spread over several steps; decode rows are not counted against that budget. The prompts
 * being prefilled share the budget: one under way takes at most its share, so a short prompt behind a long one
 * starts at once and runs beside it. Long prompts (more than four steps' budget to go) take turns, oldest first:
 * one is prefilled at a time, beside the shorter ones.</li>
 * <li>Prefix cache: a new sequence starts from the longest run of its prompt's full blocks found in the pool's
 * cache under the same model version (at least its last token is always computed, for its logits).</li>
 * <li>Preemption: when a running sequence needs a block and none is left, the newest running sequence gives all its
 * blocks back and waits at the head of the queue; when it runs again its tokens (prompt and generated) are
 * prefilled again, so its output is the same.</li>
 * </ul>
 * Not thread-safe: the engine thread owns it.
 */
final class Scheduler
{
    /** Limits of a step. */
    record Limits(int maxBatchSize, int maxPrefillTokens, int maxPrefillBatchSize, int maxContext)
    {
        Limits
        {
            if (maxBatchSize < 1 || maxPrefillTokens < 1 || maxPrefillBatchSize < 1 || maxContext < 2)
            {
                throw new IllegalArgumentException("invalid limits maxBatchSize=" + maxBatchSize +
                    " maxPrefillTokens=" + maxPrefillTokens + " maxPrefillBatchSize=" + maxPrefillBatchSize +
                    " maxContext=" + maxContext);
            }
        }

        /** Most rows of one step. */
        int maxRows()
        {
            return maxBatchSize + maxPrefillTokens;
        }
    }

    /** One step: the batch to run and the sequence of each of its segments. */
    record Step(ForwardBatch batch, Sequence[] sequences)
    {
    }

    private final KvBlockPool pool;
    private final Limits limits;
    private final String version;
    private final IntPredicate endOfGeneration;
    private final ArrayDeque<Sequence> waiting = new ArrayDeque<>();
    private final List<Sequence> running = new ArrayList<>();
    private final int[] rowTokens;
    private long preemptions;
    private long steps;

    Scheduler(final KvBlockPool pool, final Limits limits, final String version, final IntPredicate endOfGeneration)
    {
        this.pool = pool;
        this.limits = limits;
        this.version = version;
        this.endOfGeneration = endOfGeneration;
        this.rowTokens = new int[limits.maxRows()];
    }

    Limits limits()
    {
        return limits;
    }

    long preemptions()
    {
        return preemptions;
    }

    long steps()
    {
        return steps;
    }

    /** Counts steps and preemptions from zero again (after a warm-up). */
    void resetCounters()
    {
        steps = 0;
        preemptions = 0;
    }

    int waitingCount()
    {
        return waiting.size();
    }

    int runningCount()
    {
        return running.size();
    }

    boolean idle()
    {
        return waiting.isEmpty() && running.isEmpty();
    }

    /**
     * Checks that a request can ever run: its prompt fits the context, and its longest possible sequence fits the
     * pool on its own.
     */
    void validate(final GenerationRequest request)
    {
        final int prompt = request.prompt().length;
        if (prompt >= limits.maxContext())
        {
            throw new IllegalArgumentException("prompt of " + prompt + " tokens does not fit the context of " +
                limits.maxContext() + " tokens (at least one position must be left to generate)");
        }
        final int longest = (int)Math.min(limits.maxContext(), (long)prompt + request.maxTokens());
        if (pool.blocksFor(longest) > pool.blockCount())
        {
            throw new IllegalArgumentException("a sequence of up to " + longest + " tokens needs " +
                pool.blocksFor(longest) + " KV blocks of " + pool.blockTokens() + " positions, and the KV pool holds " +
                pool.blockCount() + " (" + pool.blockCount() * pool.blockBytes() + " bytes): raise the KV memory " +
                "or lower max_tokens");
        }
    }

    void add(final Sequence s)
    {
        waiting.addLast(s);
    }

    /** Queues a sequence whose first {@code tokens} positions are in {@code blocks} already (a KV transfer). */
    void addImported(final Sequence s, final int[] blocks, final int tokens, final int cachedBlocks)
    {
        if (tokens >= s.length || pool.blocksFor(tokens) > blocks.length)
        {
            throw new IllegalArgumentException("imported KV of " + tokens + " positions in " + blocks.length +
                " blocks does not fit a sequence of " + s.length + " tokens");
        }
        for (final int b : blocks)
        {
            s.addBlock(b);
        }
        s.computed = tokens;
        // only what this pool's prefix cache held counts as cached; the rest was computed on another node
        s.cachedTokens = Math.min(tokens, cachedBlocks * pool.blockTokens());
        waiting.addLast(s);
    }

    /**
     * Blocks for the KV of {@code tokens} that will arrive from elsewhere: leading full blocks found in the prefix
     * cache, then fresh ones; null (nothing held) when fewer than {@code headroom} blocks would stay available.
     */
    Engine.KvRun reserve(final int[] tokens, final int headroom)
    {
        final int bt = pool.blockTokens();
        final int needed = pool.blocksFor(tokens.length);
        final int[] ids = new int[needed];
        int cached = 0;
        long parent = 0L;
        for (int b = 0; b < tokens.length / bt; b++)
        {
            final int id = pool.lookup(version, parent, tokens, b * bt);
            if (id < 0)
            {
                break;
            }
            ids[cached++] = id;
            parent = KvBlockPool.chainHash(parent, tokens, b * bt, bt);
        }
        if (pool.available() - (needed - cached) < headroom)
        {
            for (int i = 0; i < cached; i++)
            {
                pool.release(ids[i]);
            }
            return null;
        }
        for (int i = cached; i < needed; i++)
        {
            ids[i] = pool.allocate();
        }
        return new Engine.KvRun(ids, tokens.length, cached);
    }

    /** Removes a sequence wherever it is and frees its blocks; false if it is not here. */
    boolean remove(final Sequence s)
    {
        if (waiting.remove(s) || running.remove(s))
        {
            freeBlocks(s);
            return true;
        }
        return false;
    }

    /** Every sequence still here (waiting or running). */
    List<Sequence> all()
    {
        final List<Sequence> all = new ArrayList<>(running);
        all.addAll(waiting);
        return all;
    }

    /** The next step, or null when there is nothing to run. */
    Step schedule()
    {
        final List<ForwardBatch.Segment> segments = new ArrayList<>();
        final List<Sequence> seqs = new ArrayList<>();
        int rows = 0;
        int prefillTokens = limits.maxPrefillTokens();
        int prefills = 0;
        boolean preempted = false;
        // the prompts being prefilled (under way or waiting) share the budget: a prompt under way takes at most its
        // share, so a short prompt behind a long one starts at the next step and runs beside it instead of after the
        // whole long prompt (as vLLM's long_prefill_token_threshold); alone, a prompt takes the whole budget.
        // Long prompts (more than four steps' budget to go) take turns, oldest first: one at a time is prefilled, so
        // each one's first token waits for its own prefill and not for every long prompt's beside it (as vLLM's
        // max_long_partial_prefills = 1); shorter prompts still run beside it, and start ahead of long ones waiting
        Sequence longTurn = null;
        int prefilling = 0;
        for (final java.util.Collection<Sequence> queue : List.<java.util.Collection<Sequence>>of(running, waiting))
        {
            for (final Sequence s : queue)
            {
                if (queue == running && s.pending() <= 1)
                {
                    continue; // decoding
                }
                if (isLong(s))
                {
                    if (longTurn != null)
                    {
                        continue; // waits for its turn
                    }
                    longTurn = s;
                }
                prefilling++;
            }
        }
        final int chunkCap = prefilling > 1 ?
            Math.max(1, prefillTokens / Math.min(prefilling, limits.maxPrefillBatchSize())) : prefillTokens;
        // running sequences first, oldest first
        for (int i = 0; i < running.size() && segments.size() < limits.maxBatchSize(); i++)
        {
            final Sequence s = running.get(i);
            final int pending = s.pending();
            final boolean prefill = pending > 1;
            final int n = prefill ? Math.min(Math.min(pending, prefillTokens), chunkCap) : 1;
            if (prefill && (n == 0 || prefills == limits.maxPrefillBatchSize() || isLong(s) && s != longTurn))
            {
                continue;
            }
            boolean fits = true;
            while (!allocate(s, s.computed + n))
            {
                // preempt the newest running sequence (never one already in this step: those are older)
                final Sequence victim = running.get(running.size() - 1);
                preempt(victim);
                preempted = true;
                if (victim == s)
                {
                    fits = false;
                    break;
                }
            }
            if (!fits)
            {
                break;
            }
            rows = addSegment(segments, seqs, s, n, rows);
            if (prefill)
            {
                prefillTokens -= n;
                prefills++;
            }
        }
        // then waiting sequences, first come first served (but a long prompt whose turn it is not), while nothing had
        // to be preempted
        for (final java.util.Iterator<Sequence> it = waiting.iterator(); !preempted && it.hasNext() &&
            segments.size() < limits.maxBatchSize() && prefills < limits.maxPrefillBatchSize() && prefillTokens > 0; )
        {
            final Sequence s = it.next();
            if (isLong(s) && s != longTurn)
            {
                continue;
            }
            if (s.computed == 0 && s.blockCount == 0)
            {
                reuseCachedPrefix(s);
            }
            final int n = Math.min(s.pending(), prefillTokens);
            if (!allocate(s, s.computed + n))
            {
                freeBlocks(s);
                if (running.isEmpty() && pool.inUse() == 0)
                {
                    // nothing will free blocks (validate() guarantees a lone sequence fits): should not happen
                    throw new IllegalStateException("KV pool exhausted with nothing running");
                }
                // wait: running sequences, or runs held outside the scheduler (a prefill's KV until its transfer
                // ends, a decode node's import), give their blocks back later
                break;
            }
            it.remove();
            running.add(s);
            rows = addSegment(segments, seqs, s, n, rows);
            prefillTokens -= n;
            prefills++;
        }
        if (segments.isEmpty())
        {
            return null;
        }
        steps++;
        return new Step(new ForwardBatch(rowTokens, segments.toArray(ForwardBatch.Segment[]::new)),
            seqs.toArray(Sequence[]::new));
    }

    private int addSegment(final List<ForwardBatch.Segment> segments, final List<Sequence> seqs, final Sequence s,
        final int n, final int row)
    {
        System.arraycopy(s.tokens, s.computed, rowTokens, row, n);
        segments.add(new ForwardBatch.Segment(row, n, s.computed, s.blocks,
            s.computed + n == s.length && !s.prefillOnly));
        seqs.add(s);
        if (s.firstScheduledNanos == 0)
        {
            s.firstScheduledNanos = System.nanoTime();
        }
        return row + n;
    }

    /**
     * Records what a step did: advances every sequence, registers its newly full blocks in the prefix cache, and
     * for each segment with logits samples the next token and checks the stop conditions. Returns the sequences that
     * finished (already removed, blocks freed), with their reason.
     */
    List<Finished> update(final Step step, final float[][] logits, final Emitter emitter)
    {
        final List<Finished> finished = new ArrayList<>();
        final ForwardBatch.Segment[] segs = step.batch().segments();
        for (int i = 0; i < segs.length; i++)
        {
            final Sequence s = step.sequences()[i];
            s.computed += segs[i].rows();
            publishFullBlocks(s);
            if (s.prefillOnly)
            {
                if (s.computed == s.length)
                {
                    // the blocks pass to the prefill's listener, not back to the pool
                    running.remove(s);
                    finished.add(new Finished(s, FinishReason.STOP, null));
                }
                continue;
            }
            if (logits[i] == null)
            {
                continue;
            }
            final FinishReason reason;
            try
            {
                reason = emitter.sample(s, logits[i]);
            }
            catch (final RuntimeException e)
            {
                running.remove(s);
                freeBlocks(s);
                finished.add(new Finished(s, FinishReason.ERROR, e.toString()));
                continue;
            }
            if (reason != null)
            {
                running.remove(s);
                freeBlocks(s);
                finished.add(new Finished(s, reason, null));
            }
        }
        return finished;
    }

    /** A sequence that ended in a step. */
    record Finished(Sequence sequence, FinishReason reason, String error)
    {
    }

    /** Samples a sequence's next token from its logits and says whether it ends the sequence (null if not). */
    interface Emitter
    {
        FinishReason sample(Sequence s, float[] logits);
    }

    /** Whether a token ends sequence {@code s}. */
    boolean isStopToken(final Sequence s, final int token)
    {
        return s.request.stopsAt(token, endOfGeneration);
    }

    private void reuseCachedPrefix(final Sequence s)
    {
        final int bt = pool.blockTokens();
        // the last token is always computed, for the logits it gives
        final int full = (s.length - 1) / bt;
        long parent = 0L;
        for (int b = 0; b < full; b++)
        {
            final int id = pool.lookup(version, parent, s.tokens, b * bt);
            if (id < 0)
            {
                break;
            }
            s.addBlock(id);
            parent = KvBlockPool.chainHash(parent, s.tokens, b * bt, bt);
            s.setChain(b, parent);
            s.published = b + 1;
            s.computed = (b + 1) * bt;
        }
        if (s.preemptions == 0)
        {
            s.cachedTokens = s.computed;
        }
    }

    private void publishFullBlocks(final Sequence s)
    {
        final int bt = pool.blockTokens();
        while ((s.published + 1) * bt <= s.computed)
        {
            final int b = s.published;
            final long parent = s.chainBefore(b);
            pool.publish(s.blocks[b], version, parent, s.tokens, b * bt);
            s.setChain(b, KvBlockPool.chainHash(parent, s.tokens, b * bt, bt));
            s.published++;
        }
    }

    /** Gives {@code s} blocks for {@code positions} positions; false (keeping what it got) if the pool ran out. */
    private boolean allocate(final Sequence s, final int positions)
    {
        final int needed = pool.blocksFor(positions);
        while (s.blockCount < needed)
        {
            final int id = pool.allocate();
            if (id < 0)
            {
                return false;
            }
            s.addBlock(id);
        }
        return true;
    }

    /** Steps of the full prefill budget a prompt must still need to take turns with the other long ones. */
    static final int LONG_PROMPT_STEPS = 4;

    /**
     * A prompt with more than {@link #LONG_PROMPT_STEPS} steps of prefill budget still to compute (1,024 tokens at
     * {@code strata serve}'s 256): shorter ones share the budget beside it rather than wait for a whole long prompt.
     * Not one that was preempted, which computes its tokens again first (it may have been decoding; its stream
     * waits).
     */
    private boolean isLong(final Sequence s)
    {
        return s.pending() > LONG_PROMPT_STEPS * limits.maxPrefillTokens() && s.preemptions == 0;
    }

    private void preempt(final Sequence s)
    {
        running.remove(s);
        freeBlocks(s);
        s.preemptions++;
        preemptions++;
        waiting.addFirst(s);
    }

    private void freeBlocks(final Sequence s)
    {
        if (s.prefilled != null && s.blockCount > 0)
        {
            s.prefilled.onReleased(); // a reader of the blocks lets go before another sequence may write them
        }
        for (int i = 0; i < s.blockCount; i++)
        {
            pool.release(s.blocks[i]);
        }
        s.blockCount = 0;
        s.computed = 0;
        s.published = 0;
    }

    /** Drops the sequences of a failed step: their blocks are freed and they are returned to be ended. */
    List<Sequence> fail(final Step step)
    {
        final List<Sequence> failed = new ArrayList<>();
        for (final Sequence s : step.sequences())
        {
            if (running.remove(s))
            {
                freeBlocks(s);
                failed.add(s);
            }
        }
        return failed;
    }
}
