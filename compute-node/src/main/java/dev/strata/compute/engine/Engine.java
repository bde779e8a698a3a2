package dev.strata.compute.engine;

import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.model.Llama;
import dev.strata.compute.model.ModelConfig;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;

import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.IntPredicate;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The serving engine of one model: requests in, streams of tokens out. One thread runs the loop
 * schedule → execute → update ({@link Scheduler}, {@link Llama#execute}); callers submit and cancel from any
 * thread through a command queue that the loop drains between steps.
 * <p>
 * A bad request is refused at {@link #submit} with an {@link IllegalArgumentException} and never reaches a step; a
 * step that fails ends its sequences with {@link FinishReason#ERROR} and the engine goes on with the others.
 */
public final class Engine implements GenerationService, AutoCloseable
{
    private static final Logger LOG = Logger.getLogger(Engine.class.getName());

    /** Settings of an engine; {@link #conclude()} validates them and fills the defaults. */
    public static final class Context
    {
        private WeightSource weights;
        private ThreadPool pool;
        private Tokenizer tokenizer;
        private IntPredicate endOfGeneration;
        private String modelVersion;
        private KvBlockPool.KvType kvType = KvBlockPool.KvType.F16;
        private long kvMemory = 256L << 20;
        private int blockTokens = 16;
        private int maxBatchSize = 32;
        private int maxPrefillTokens = 512;
        private int maxPrefillBatchSize = 8;
        private int maxContext;
        private String name = "strata-engine";
        private boolean batchInvariant;
        private int warmUpSteps;

        /** The model's weights (required). */
        public Context weights(final WeightSource weights)
        {
            this.weights = weights;
            return this;
        }

        /** The process's compute pool (required; shared by every engine of the process). */
        public Context pool(final ThreadPool pool)
        {
            this.pool = pool;
            return this;
        }

        /** For text and stop strings; without it completions carry tokens only. */
        public Context tokenizer(final Tokenizer tokenizer)
        {
            this.tokenizer = tokenizer;
            return this;
        }

        /** Tokens that end a sequence (default: the tokenizer's end-of-generation tokens, or none). */
        public Context endOfGeneration(final IntPredicate endOfGeneration)
        {
            this.endOfGeneration = endOfGeneration;
            return this;
        }

        /** The model version's digest: prefix-cache entries never cross versions (required). */
        public Context modelVersion(final String modelVersion)
        {
            this.modelVersion = modelVersion;
            return this;
        }

        public Context kvType(final KvBlockPool.KvType kvType)
        {
            this.kvType = kvType;
            return this;
        }

        /** Bytes of the KV block pool. */
        public Context kvMemory(final long kvMemory)
        {
            this.kvMemory = kvMemory;
            return this;
        }

        public Context blockTokens(final int blockTokens)
        {
            this.blockTokens = blockTokens;
            return this;
        }

        /** Most sequences in one step. */
        public Context maxBatchSize(final int maxBatchSize)
        {
            this.maxBatchSize = maxBatchSize;
            return this;
        }

        /** Most prompt tokens in one step. */
        public Context maxPrefillTokens(final int maxPrefillTokens)
        {
            this.maxPrefillTokens = maxPrefillTokens;
            return this;
        }

        /** Most prompts (or prompt chunks) in one step. */
        public Context maxPrefillBatchSize(final int maxPrefillBatchSize)
        {
            this.maxPrefillBatchSize = maxPrefillBatchSize;
            return this;
        }

        /** Most positions of one sequence (default and cap: the model's context length). */
        public Context maxContext(final int maxContext)
        {
            this.maxContext = maxContext;
            return this;
        }

        /**
         * Attention with the same arithmetic for every token however it is batched (see
         * {@link Llama#batchInvariant}): nodes of a split deployment use it so a moved request continues exactly.
         */
        public Context batchInvariant(final boolean on)
        {
            this.batchInvariant = on;
            return this;
        }

        /**
         * Decode steps per batch size of the warm-up that {@link #launch} runs before it returns (default 0: none);
         * see {@link Engine#warmUp(int)}.
         */
        public Context warmUpSteps(final int steps)
        {
            this.warmUpSteps = steps;
            return this;
        }

        /** Name of the engine's thread. */
        public Context name(final String name)
        {
            this.name = name;
            return this;
        }

        public Context conclude()
        {
            Objects.requireNonNull(weights, "weights");
            Objects.requireNonNull(pool, "pool");
            if (modelVersion == null || modelVersion.isBlank())
            {
                throw new IllegalArgumentException("modelVersion is required (the prefix cache is keyed by it)");
            }
            if (endOfGeneration == null)
            {
                endOfGeneration = tokenizer != null ? tokenizer::isEndOfGeneration : t -> false;
            }
            final ModelConfig c = weights.config();
            maxContext = maxContext <= 0 ? c.contextLength() : Math.min(maxContext, c.contextLength());
            if (kvMemory <= 0)
            {
                throw new IllegalArgumentException("invalid kvMemory=" + kvMemory);
            }
            if (warmUpSteps < 0)
            {
                throw new IllegalArgumentException("warmUpSteps must be >= 0, got " + warmUpSteps);
            }
            return this;
        }
    }

    /** A submitted request: its id, its end, and a way to cancel it. */
    public final class Handle implements RequestHandle
    {
        private final Sequence sequence;
        private final CompletableFuture<Completion> completion;

        private Handle(final Sequence sequence, final CompletableFuture<Completion> completion)
        {
            this.sequence = sequence;
            this.completion = completion;
        }

        @Override
        public long id()
        {
            return sequence.id;
        }

        /** Completes when the request ends, however it ends. */
        @Override
        public CompletableFuture<Completion> completion()
        {
            return completion;
        }

        /** Ends the request at the next step boundary and frees its KV blocks; harmless once it has ended. */
        @Override
        public void cancel()
        {
            commands.add(() -> cancelNow(sequence));
            LockSupport.unpark(thread);
        }
    }

    /** What the engine has done, for metrics. */
    public record Stats(long steps, long preemptions, int running, int waiting, int kvBlocks, int kvBlocksInUse,
        int kvBlocksPeak, long kvBlockBytes, long prefixLookups, long prefixHits)
    {
        public double prefixHitRate()
        {
            return prefixLookups == 0 ? 0 : (double)prefixHits / prefixLookups;
        }
    }

    private final Context ctx;
    private final Llama llama;
    private final KvBlockPool kv;
    private final Scheduler scheduler;
    private final ConcurrentLinkedQueue<Runnable> commands = new ConcurrentLinkedQueue<>();
    private final AtomicLong ids = new AtomicLong();
    private final Thread thread;
    private volatile boolean closed;
    private volatile Stats stats;
    private volatile long warmUpNanos;

    private Engine(final Context ctx)
    {
        this.ctx = ctx;
        final Scheduler.Limits limits = new Scheduler.Limits(ctx.maxBatchSize, ctx.maxPrefillTokens,
            ctx.maxPrefillBatchSize, ctx.maxContext);
        this.kv = new KvBlockPool(ctx.weights.config(), ctx.kvType, ctx.blockTokens, ctx.kvMemory);
        try
        {
            this.llama = new Llama(ctx.weights, ctx.pool, limits.maxRows());
            llama.batchInvariant(ctx.batchInvariant);
            this.scheduler = new Scheduler(kv, limits, ctx.modelVersion, ctx.endOfGeneration);
            this.stats = snapshot();
            this.thread = Thread.ofPlatform().name(ctx.name).daemon().unstarted(this::run);
            thread.start();
        }
        catch (final RuntimeException | Error e)
        {
            kv.close();
            throw e;
        }
    }

    /** Starts an engine on its own thread, warmed up first if the context asks for it. */
    public static Engine launch(final Context ctx)
    {
        final Engine engine = new Engine(ctx.conclude());
        if (ctx.warmUpSteps > 0)
        {
            try
            {
                engine.warmUpNanos = engine.warmUp(ctx.warmUpSteps);
            }
            catch (final RuntimeException | Error e)
            {
                engine.close();
                throw e;
            }
        }
        return engine;
    }

    /** How long the warm-up of {@link #launch} took (0 without one). */
    public long warmUpNanos()
    {
        return warmUpNanos;
    }

    /** Batch sizes a warm-up decodes at (those above the batch limit are left out). */
    private static final int[] WARM_UP_BATCHES = {1, 2, 4, 8};

    /**
     * Runs requests of random tokens through the step shapes serving meets, before the engine takes work: prompts
     * of 16 tokens decoded {@code steps} steps at 1, 2, 4 and 8 sequences (up to the batch limit), a prompt of the
     * most tokens a step takes, and a prefill-only request (a prefill node's work). A cold JVM interprets the Java
     * half of a step (attention, norms, sampling, scheduling) and compiles it while requests wait, on the same
     * cores: without this the first minute of a node's requests decode slower, which widens the spread of their
     * time per token. Afterwards the prefix cache holds nothing of the warm-up and the counters of {@link #stats()}
     * start from zero. Call it before the first request.
     *
     * @param steps decode steps per batch size.
     * @return nanoseconds the warm-up took.
     */
    public long warmUp(final int steps)
    {
        if (steps < 1)
        {
            throw new IllegalArgumentException("steps must be >= 1, got " + steps);
        }
        if (ids.get() != 0)
        {
            throw new IllegalStateException("warm up before the first request");
        }
        final long start = System.nanoTime();
        final java.util.Random random = new java.util.Random(42);
        final int vocab = llama.config().vocabSize();
        final int maxContext = ctx.maxContext;
        final int promptLength = Math.max(1, Math.min(16, maxContext / 2));
        final int decodeSteps = Math.min(steps, maxContext - promptLength);
        if (decodeSteps >= 1)
        {
            for (final int batch : WARM_UP_BATCHES)
            {
                if (batch > ctx.maxBatchSize)
                {
                    break;
                }
                final List<CompletableFuture<Completion>> done = new java.util.ArrayList<>();
                for (int i = 0; i < batch; i++)
                {
                    done.add(warmUpRequest(randomTokens(random, promptLength, vocab), decodeSteps));
                }
                done.forEach(CompletableFuture::join);
            }
        }
        final int longPrompt = Math.min(ctx.maxPrefillTokens, maxContext - 1);
        if (longPrompt >= 1)
        {
            warmUpRequest(randomTokens(random, longPrompt, vocab), 1).join();
            final CompletableFuture<Void> prefilled = new CompletableFuture<>();
            try
            {
                prefill(randomTokens(random, longPrompt, vocab), new PrefillListener()
                {
                    @Override
                    public void onPrefilled(final KvRun run)
                    {
                        release(run); // queued ahead of the reset below
                        prefilled.complete(null);
                    }

                    @Override
                    public void onFailed(final String error)
                    {
                        prefilled.completeExceptionally(new IllegalStateException("warm-up prefill: " + error));
                    }
                });
                prefilled.join();
            }
            catch (final IllegalArgumentException e)
            {
                LOG.fine(() -> "warm-up prefill left out: " + e.getMessage());
            }
        }
        final CompletableFuture<Void> reset = new CompletableFuture<>();
        commands.add(() ->
        {
            kv.forgetCached();
            kv.resetCounters();
            scheduler.resetCounters();
            stats = snapshot();
            reset.complete(null);
        });
        LockSupport.unpark(thread);
        reset.join();
        return System.nanoTime() - start;
    }

    /** A greedy request of exactly {@code tokens} tokens (end-of-generation ignored); a shape the pool cannot hold is left out. */
    private CompletableFuture<Completion> warmUpRequest(final int[] prompt, final int tokens)
    {
        try
        {
            final GenerationRequest request = new GenerationRequest(prompt,
                dev.strata.compute.sampling.SamplerConfig.greedy(), tokens, null, null, -1, 0f, 0f, true);
            return submit(request, c -> { }).completion().thenApply(c ->
            {
                if (c.reason() == FinishReason.ERROR)
                {
                    throw new IllegalStateException("warm-up request failed: " + c.error());
                }
                return c;
            });
        }
        catch (final IllegalArgumentException e)
        {
            LOG.fine(() -> "warm-up request left out: " + e.getMessage());
            return CompletableFuture.completedFuture(null);
        }
    }

    private static int[] randomTokens(final java.util.Random random, final int n, final int vocab)
    {
        final int[] tokens = new int[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = random.nextInt(vocab);
        }
        return tokens;
    }

    public ModelConfig config()
    {
        return llama.config();
    }

    @Override
    public int vocabSize()
    {
        return llama.config().vocabSize();
    }

    /** The model version's digest this engine runs (its prefix cache and KV transfers are keyed by it). */
    public String modelVersion()
    {
        return ctx.modelVersion;
    }

    /** The KV block pool, for transfers: read a held block's bytes, or write into a reserved one. */
    public KvBlockPool kvPool()
    {
        return kv;
    }

    /**
     * KV blocks held outside a running sequence: the keys and values of {@code tokens} positions, in position
     * order. The holder gives them back with {@link #release(KvRun)} or passes them to {@link #submit(GenerationRequest,
     * GenerationListener, KvRun)}.
     *
     * @param blocks        pool block ids.
     * @param tokens        positions they hold.
     * @param cachedBlocks  leading blocks that were found in this pool's prefix cache (a transfer skips them).
     */
    public record KvRun(int[] blocks, int tokens, int cachedBlocks)
    {
    }

    /**
     * The end of a {@link #prefill}: the blocks, or why there are none; and, for a listener that sends the blocks on
     * while the prefill still runs, each layer as it lands.
     */
    public interface PrefillListener
    {
        /** On the engine thread: the KV of every token is in {@code kv}, which the listener now holds. */
        void onPrefilled(KvRun kv);

        void onFailed(String error);

        /**
         * On the engine thread, after a step: layer {@code layer}'s keys and values of positions
         * {@code [0, positions)} are in {@code blocks} (the sequence's block ids, in position order). The listener
         * may read those bytes from another thread until {@link #onReleased()}; they do not change.
         */
        default void onLayerStored(final int layer, final int positions, final int[] blocks)
        {
        }

        /**
         * On the engine thread, before the blocks given to {@link #onLayerStored} go back to the pool (the prefill
         * was preempted and starts again later, or was cancelled or failed): returns once no reader holds them.
         * What was read before stays valid: a position's keys and values are recomputed with the same bits.
         */
        default void onReleased()
        {
        }
    }

    /**
     * Computes the keys and values of {@code tokens} (all of them; no logits, nothing sampled) through the same
     * batches as other requests, and hands the blocks to the listener instead of freeing them: the prefill half of
     * a request whose decode runs elsewhere. Returns a handle that cancels it.
     */
    public Handle prefill(final int[] tokens, final PrefillListener listener)
    {
        if (closed)
        {
            throw new IllegalStateException("engine closed");
        }
        final GenerationRequest request = GenerationRequest.of(tokens,
            dev.strata.compute.sampling.SamplerConfig.greedy(), 1);
        for (final int t : tokens)
        {
            if (t < 0 || t >= llama.config().vocabSize())
            {
                throw new IllegalArgumentException("token id " + t + " outside the vocabulary [0, " +
                    llama.config().vocabSize() + ")");
            }
        }
        scheduler.validate(request);
        final CompletableFuture<Completion> done = new CompletableFuture<>();
        final GenerationListener chained = new GenerationListener()
        {
            @Override
            public void onComplete(final Completion completion)
            {
                try
                {
                    if (completion.reason() != FinishReason.STOP)
                    {
                        listener.onFailed(completion.error() != null ? completion.error() :
                            "prefill ended: " + completion.reason());
                    }
                }
                finally
                {
                    done.complete(completion);
                }
            }
        };
        final Sequence s = new Sequence(ids.incrementAndGet(), request, chained, Sampler.create(request.sampling()),
            null, System.nanoTime(), true);
        s.prefilled = listener;
        commands.add(() -> scheduler.add(s));
        LockSupport.unpark(thread);
        return new Handle(s, done);
    }

    /** Gives back blocks held outside a sequence (a prefill's, or an unused reservation's). */
    public void release(final KvRun run)
    {
        commands.add(() ->
        {
            for (final int id : run.blocks())
            {
                kv.release(id);
            }
        });
        LockSupport.unpark(thread);
    }

    /**
     * Reserves the blocks of a sequence whose first {@code tokens.length} positions will arrive from another node:
     * the leading full blocks found in the prefix cache under this engine's version are taken from it (a transfer
     * skips them), the others are allocated for the transfer to write. Completes with null when the pool cannot
     * spare them now (the sender waits and retries: back-pressure, not failure): the pool keeps
     * {@code headroomBlocks} free for the running sequences.
     */
    public CompletableFuture<KvRun> reserve(final int[] tokens, final int headroomBlocks)
    {
        final CompletableFuture<KvRun> result = new CompletableFuture<>();
        commands.add(() ->
        {
            try
            {
                result.complete(scheduler.reserve(tokens, headroomBlocks));
            }
            catch (final RuntimeException e)
            {
                result.completeExceptionally(e);
            }
        });
        LockSupport.unpark(thread);
        return result;
    }

    @Override
    public Stats stats()
    {
        return stats;
    }

    /** Most positions of one sequence (prompt and generated). */
    @Override
    public int maxContext()
    {
        return ctx.maxContext;
    }

    /**
     * Queues a request. Throws {@link IllegalArgumentException} at once if it can never run (a token outside the
     * vocabulary, a prompt that fills the context, a sequence larger than the whole KV pool).
     */
    @Override
    public Handle submit(final GenerationRequest request, final GenerationListener listener)
    {
        return submit(request, listener, null);
    }

    /**
     * Queues a request whose first {@code kv.tokens()} positions already have their keys and values in the blocks of
     * {@code kv} (from {@link #reserve}, filled by a transfer): only the rest of the prompt is computed here. The
     * reservation's blocks pass to the request.
     */
    public Handle submit(final GenerationRequest request, final GenerationListener listener, final KvRun imported)
    {
        Objects.requireNonNull(listener, "listener");
        if (closed)
        {
            throw new IllegalStateException("engine closed");
        }
        final int vocab = llama.config().vocabSize();
        for (final int t : request.prompt())
        {
            if (t < 0 || t >= vocab)
            {
                throw new IllegalArgumentException("token id " + t + " outside the vocabulary [0, " + vocab + ")");
            }
        }
        if (!request.stopStrings().isEmpty() && ctx.tokenizer == null)
        {
            throw new IllegalArgumentException("stop strings need a tokenizer");
        }
        scheduler.validate(request);
        final CompletableFuture<Completion> done = new CompletableFuture<>();
        final GenerationListener chained = new GenerationListener()
        {
            @Override
            public void onToken(final TokenEvent event)
            {
                listener.onToken(event);
            }

            @Override
            public void onComplete(final Completion completion)
            {
                try
                {
                    listener.onComplete(completion);
                }
                finally
                {
                    done.complete(completion);
                }
            }
        };
        final Sequence s = new Sequence(ids.incrementAndGet(), request, chained,
            Sampler.create(request.sampling()), ctx.tokenizer == null ? null :
                new TextStream(ctx.tokenizer, request.stopStrings()), System.nanoTime(), false);
        if (request.resumed() > 0)
        {
            // generated before a move: penalised as generated tokens, and their draws already taken
            final int[] p = request.prompt();
            if (request.presencePenalty() != 0f || request.frequencyPenalty() != 0f)
            {
                for (int i = p.length - request.resumed(); i < p.length; i++)
                {
                    s.countGenerated(p[i], vocab);
                }
            }
            s.sampler.skip(request.resumed());
        }
        commands.add(() ->
        {
            if (imported != null)
            {
                try
                {
                    scheduler.addImported(s, imported.blocks(), imported.tokens(), imported.cachedBlocks());
                }
                catch (final IllegalArgumentException e)
                {
                    for (final int b : imported.blocks())
                    {
                        kv.release(b);
                    }
                    finish(s, FinishReason.ERROR, e.getMessage());
                }
            }
            else
            {
                scheduler.add(s);
            }
        });
        LockSupport.unpark(thread);
        return new Handle(s, done);
    }

    /** Submits and waits for the end. */
    public Completion generate(final GenerationRequest request)
    {
        return submit(request, c -> { }).completion().join();
    }

    private void run()
    {
        while (!closed)
        {
            Runnable command;
            while ((command = commands.poll()) != null)
            {
                command.run();
            }
            final Scheduler.Step step = scheduler.schedule();
            if (step == null)
            {
                stats = snapshot();
                LockSupport.parkNanos(this, 50_000_000L);
                continue;
            }
            final float[][] logits;
            try
            {
                logits = llama.execute(step.batch(), kv, streamed(step));
            }
            catch (final RuntimeException | Error e)
            {
                LOG.log(Level.WARNING, "step of " + step.sequences().length + " sequences failed", e);
                for (final Sequence s : scheduler.fail(step))
                {
                    finish(s, FinishReason.ERROR, "forward pass failed: " + e);
                }
                continue;
            }
            int sampled = 0;
            for (final float[] l : logits)
            {
                sampled += l != null ? 1 : 0;
            }
            ctx.weights.tokensSampled(sampled);
            for (final Scheduler.Finished f : scheduler.update(step, logits, this::sample))
            {
                final Sequence s = f.sequence();
                if (s.prefillOnly)
                {
                    handOver(s);
                }
                finish(s, f.reason(), f.error());
            }
            stats = snapshot();
        }
        for (final Sequence s : scheduler.all())
        {
            scheduler.remove(s);
            finish(s, FinishReason.CANCELLED, "engine closed");
        }
    }

    /** The per-layer callback of a step that prefills for listeners that stream (null if none does). */
    private java.util.function.IntConsumer streamed(final Scheduler.Step step)
    {
        final Sequence[] seqs = step.sequences();
        boolean any = false;
        for (final Sequence s : seqs)
        {
            any |= s.prefilled != null;
        }
        if (!any)
        {
            return null;
        }
        final dev.strata.compute.model.ForwardBatch.Segment[] segs = step.batch().segments();
        final int[][] tables = new int[seqs.length][];
        return layer ->
        {
            for (int i = 0; i < seqs.length; i++)
            {
                final Sequence s = seqs[i];
                if (s.prefilled == null)
                {
                    continue;
                }
                if (tables[i] == null)
                {
                    tables[i] = java.util.Arrays.copyOf(s.blocks, s.blockCount);
                }
                try
                {
                    s.prefilled.onLayerStored(layer, segs[i].endPos(), tables[i]);
                }
                catch (final RuntimeException e)
                {
                    LOG.log(Level.WARNING, "prefill listener of request " + s.id + " failed on a layer", e);
                }
            }
        };
    }

    private Stats snapshot()
    {
        return new Stats(scheduler.steps(), scheduler.preemptions(), scheduler.runningCount(),
            scheduler.waitingCount(), kv.blockCount(), kv.inUse(), kv.peakInUse(), kv.blockBytes(), kv.prefixLookups(),
            kv.prefixHits());
    }

    /** Samples the next token of {@code s}, hands it to the listener, and says whether {@code s} ends. */
    private FinishReason sample(final Sequence s, final float[] logits)
    {
        final GenerationRequest r = s.request;
        float logprob = Float.NaN;
        int[] topTokens = EMPTY_INTS;
        float[] topLogprobs = EMPTY_FLOATS;
        final float[] raw = r.logprobs() >= 0 ? logits.clone() : null;
        final boolean penalties = r.presencePenalty() != 0f || r.frequencyPenalty() != 0f;
        if (penalties)
        {
            s.penalize(logits, r.presencePenalty(), r.frequencyPenalty());
        }
        final int token = s.sampler.sample(logits);
        if (penalties)
        {
            s.countGenerated(token, logits.length);
        }
        s.sampler.accept(token);
        s.append(token);
        s.generated++;
        if (s.firstTokenNanos == 0)
        {
            s.firstTokenNanos = System.nanoTime();
        }
        if (raw != null)
        {
            final Logprobs lp = Logprobs.of(raw, token, r.logprobs());
            logprob = lp.logprob();
            topTokens = lp.topTokens();
            topLogprobs = lp.topLogprobs();
        }
        final boolean stopToken = scheduler.isStopToken(s, token);
        final boolean last = s.generated >= r.maxTokens() || s.length >= scheduler.limits().maxContext();
        final String delta = s.text == null ? "" : s.text.accept(token, stopToken, last);
        final FinishReason reason = stopToken || (s.text != null && s.text.stopped()) ? FinishReason.STOP :
            last ? FinishReason.LENGTH : null;
        s.listener.onToken(new TokenEvent(token, delta, logprob, topTokens, topLogprobs));
        return reason;
    }

    private static final int[] EMPTY_INTS = new int[0];
    private static final float[] EMPTY_FLOATS = new float[0];

    /** Passes a finished prefill's blocks to its listener (or back to the pool if the listener fails). */
    private void handOver(final Sequence s)
    {
        final KvRun run = new KvRun(java.util.Arrays.copyOf(s.blocks, s.blockCount), s.computed, 0);
        s.blockCount = 0;
        try
        {
            s.prefilled.onPrefilled(run);
        }
        catch (final RuntimeException e)
        {
            LOG.log(Level.WARNING, "prefill listener of request " + s.id + " failed", e);
            for (final int b : run.blocks())
            {
                kv.release(b);
            }
        }
    }

    private void cancelNow(final Sequence s)
    {
        if (!s.finished && scheduler.remove(s))
        {
            finish(s, FinishReason.CANCELLED, null);
        }
    }

    private void finish(final Sequence s, final FinishReason reason, final String error)
    {
        if (s.finished)
        {
            return;
        }
        s.finished = true;
        final long now = System.nanoTime();
        final Completion c = new Completion(s.generatedTokens(), s.text == null ? "" : s.text.text(), reason, s.promptLength,
            s.cachedTokens, s.preemptions, s.firstScheduledNanos == 0 ? 0 : s.firstScheduledNanos - s.submittedNanos,
            s.firstTokenNanos == 0 ? 0 : s.firstTokenNanos - s.submittedNanos, now - s.submittedNanos, error);
        try
        {
            s.listener.onComplete(c);
        }
        catch (final RuntimeException e)
        {
            LOG.log(Level.WARNING, "listener of request " + s.id + " failed on completion", e);
        }
    }

    /** Ends every request (cancelled), stops the thread and frees the KV pool. */
    @Override
    public void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        LockSupport.unpark(thread);
        try
        {
            thread.join();
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
        }
        kv.close();
    }
}
