package dev.strata.compute.engine;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.Generator;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.model.Llama;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine against the lone-sequence path ({@link Generator} over a {@link dev.strata.compute.model.KvCache}):
 * batches, prefix reuse, preemption, cancellation and bad input, on synthetic models.
 */
class EngineTest
{
    private static final String SHAPE = "dim=64,layers=2,heads=4,kv=2,ffn=96";

    @TempDir
    Path dir;

    private GgufFile file;
    private GgufWeightSource weights;
    private ThreadPool pool;
    private int vocab;

    private void open(final GgmlType type) throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse(SHAPE), type, null, 21);
        file = GgufFile.open(model);
        weights = new GgufWeightSource(file, false);
        pool = new ThreadPool(2);
    }

    @AfterEach
    void close()
    {
        if (pool != null)
        {
            pool.close();
            weights.close();
            file.close();
        }
    }

    private Engine.Context context(final long kvMemory)
    {
        return new Engine.Context().weights(weights).pool(pool).modelVersion("v1").kvType(KvBlockPool.KvType.F32)
            .kvMemory(kvMemory).blockTokens(16).maxBatchSize(16).maxPrefillTokens(48).maxPrefillBatchSize(4);
    }

    /** Tokens of the prompt generated alone through today's path. */
    private int[] alone(final int[] prompt, final SamplerConfig sampling, final int maxTokens)
    {
        final Generator.Result r = new Generator(new Llama(weights, pool, 64)).generate(prompt, maxTokens, 512,
            Sampler.create(sampling), t -> false, t -> true);
        return r.tokens();
    }

    private int[][] prompts(final int count, final long seed)
    {
        final Random random = new Random(seed);
        final int[][] prompts = new int[count][];
        for (int i = 0; i < count; i++)
        {
            prompts[i] = random.ints(3 + random.nextInt(60), 0, vocab).toArray();
        }
        return prompts;
    }

    @ParameterizedTest(name = "{0} weights")
    @EnumSource(value = GgmlType.class, names = {"F32", "Q8_0"})
    void shouldGiveEveryRequestOfABatchOf16TheGreedyTokensOfRunningItAlone(final GgmlType type) throws Exception
    {
        open(type);
        final int[][] prompts = prompts(16, 3);
        try (Engine engine = Engine.launch(context(16L << 20)))
        {
            final List<Engine.Handle> handles = new ArrayList<>();
            for (final int[] p : prompts)
            {
                handles.add(engine.submit(GenerationRequest.of(p, SamplerConfig.greedy(), 24), c -> { }));
            }
            for (int i = 0; i < prompts.length; i++)
            {
                final Completion c = handles.get(i).completion().get(60, TimeUnit.SECONDS);
                assertEquals(FinishReason.LENGTH, c.reason());
                assertArrayEquals(alone(prompts[i], SamplerConfig.greedy(), 24), c.tokens(), "request " + i);
                assertEquals(prompts[i].length, c.promptTokens());
            }
            // the 16 ran side by side: far fewer steps than 16 sequences one after another
            assertTrue(engine.stats().steps() < 16 * 24, "steps " + engine.stats().steps());
            awaitTrue(() -> engine.stats().kvBlocksInUse() == 0, "blocks freed");
        }
    }

    @Test
    void shouldWarmUpThroughEveryBatchShapeAndLeaveNothingOfItBehind() throws Exception
    {
        open(GgmlType.Q8_0);
        final java.util.concurrent.atomic.AtomicLong sampled = new java.util.concurrent.atomic.AtomicLong();
        final dev.strata.compute.model.WeightSource counting = new dev.strata.compute.model.WeightSource()
        {
            public dev.strata.compute.model.ModelConfig config()
            {
                return weights.config();
            }

            public dev.strata.compute.model.GlobalWeights globals()
            {
                return weights.globals();
            }

            public dev.strata.compute.model.LayerWeights acquire(final int layer)
            {
                return weights.acquire(layer);
            }

            public void release(final int layer)
            {
                weights.release(layer);
            }

            public void tokensSampled(final int count)
            {
                sampled.addAndGet(count);
            }

            public void close()
            {
            }
        };
        final int steps = 5;
        final int[] prompt = prompts(1, 77)[0];
        try (Engine engine = Engine.launch(context(8L << 20).weights(counting).warmUpSteps(steps)))
        {
            // every request of the warm-up sampled exactly its tokens: batches of 1, 2, 4 and 8 for `steps` steps
            // each (end-of-generation ignored), one token after the longest prompt a step takes, none for the
            // prefill-only request
            assertEquals((1 + 2 + 4 + 8) * steps + 1, sampled.get());
            assertTrue(engine.warmUpNanos() > 0);
            final Engine.Stats stats = engine.stats();
            assertEquals(0, stats.steps());
            assertEquals(0, stats.preemptions());
            assertEquals(0, stats.kvBlocksInUse());
            assertEquals(0, stats.kvBlocksPeak());
            assertEquals(0, stats.prefixLookups());
            assertEquals(stats.kvBlocks(), engine.kvPool().available());
            final Completion c = engine.submit(GenerationRequest.of(prompt, SamplerConfig.greedy(), 20), x -> { })
                .completion().get(60, TimeUnit.SECONDS);
            assertArrayEquals(alone(prompt, SamplerConfig.greedy(), 20), c.tokens());
            assertEquals(0, c.cachedTokens());
            assertThrows(IllegalStateException.class, () -> engine.warmUp(steps));
        }
        assertThrows(IllegalArgumentException.class, () -> context(8L << 20).warmUpSteps(-1).conclude());
    }

    @Test
    void shouldContinueAMovedRequestWithItsPenaltiesAndItsSeededDraws() throws Exception
    {
        open(GgmlType.Q8_0);
        final int[] prompt = prompts(1, 31)[0];
        final SamplerConfig seeded = SamplerConfig.defaults(5).withTemperature(1.3f);
        final GenerationRequest whole = new GenerationRequest(prompt, seeded, 40, null, null, -1, 0.8f, 0.6f, true);
        try (Engine engine = Engine.launch(context(8L << 20)))
        {
            final int[] all = engine.generate(whole).tokens();
            assertEquals(40, all.length);
            for (final int moved : new int[] {1, 17, 39})
            {
                // a failover after `moved` tokens: prompt plus those tokens, the rest of the budget, on a fresh sequence
                final GenerationRequest resumed = whole.resumedAfter(Arrays.copyOf(all, moved));
                assertEquals(moved, resumed.resumed());
                assertEquals(40 - moved, resumed.maxTokens());
                assertArrayEquals(Arrays.copyOfRange(all, moved, 40), engine.generate(resumed).tokens(),
                    "moved after " + moved);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> new GenerationRequest(prompt, seeded, 4, null, null, -1,
            0f, 0f, false, prompt.length));
    }

    @Test
    void shouldSampleEachRequestWithItsOwnSettingsAndSeed() throws Exception
    {
        open(GgmlType.F32);
        final int[][] prompts = prompts(4, 8);
        final SamplerConfig[] settings = {
            SamplerConfig.defaults(1), SamplerConfig.defaults(2).withTemperature(1.5f),
            SamplerConfig.defaults(3).withTopK(5), SamplerConfig.greedy().withRepeatPenalty(1.3f, 16)};
        try (Engine engine = Engine.launch(context(8L << 20)))
        {
            final List<Engine.Handle> handles = new ArrayList<>();
            for (int i = 0; i < prompts.length; i++)
            {
                handles.add(engine.submit(GenerationRequest.of(prompts[i], settings[i], 30), c -> { }));
            }
            for (int i = 0; i < prompts.length; i++)
            {
                assertArrayEquals(alone(prompts[i], settings[i], 30), handles.get(i).completion().get().tokens(),
                    "request " + i);
            }
        }
    }

    @Test
    void shouldReuseTheBlocksOfACachedPrefixAndNeverAcrossVersions() throws Exception
    {
        open(GgmlType.F32);
        final int[] prefix = new Random(5).ints(40, 0, vocab).toArray();
        final int[] first = concat(prefix, 7, 9, 11);
        final int[] second = concat(prefix, 200, 3);
        try (Engine engine = Engine.launch(context(8L << 20)))
        {
            final Completion a = engine.generate(GenerationRequest.of(first, SamplerConfig.greedy(), 10));
            assertEquals(0, a.cachedTokens());
            final Completion b = engine.generate(GenerationRequest.of(second, SamplerConfig.greedy(), 10));
            // the 40 shared tokens fill two blocks of 16
            assertEquals(32, b.cachedTokens());
            assertTrue(engine.stats().prefixHits() >= 2, "hits " + engine.stats().prefixHits());
            assertArrayEquals(alone(second, SamplerConfig.greedy(), 10), b.tokens());
            // the same prompt again: every full block but the one holding the last token is reused
            final Completion c = engine.generate(GenerationRequest.of(second, SamplerConfig.greedy(), 10));
            assertEquals(32, c.cachedTokens());
            assertArrayEquals(b.tokens(), c.tokens());
        }
        // another model version in its own engine over the same weights: nothing from v1 can be hit
        try (KvBlockPool kv = new KvBlockPool(weights.config(), KvBlockPool.KvType.F32, 16, 1L << 20))
        {
            final int id = kv.allocate();
            kv.publish(id, "v1", 0L, prefix, 0);
            assertEquals(-1, kv.lookup("v2", 0L, prefix, 0));
            final int hit = kv.lookup("v1", 0L, prefix, 0);
            assertEquals(id, hit);
            assertEquals(2, kv.refCount(id));
        }
    }

    @Test
    void shouldPreemptWhenThePoolRunsOutAndStillGiveEveryRequestItsTokens() throws Exception
    {
        open(GgmlType.F32);
        final int[][] prompts = prompts(8, 13);
        final int maxTokens = 40;
        // 14 blocks of 16 positions: two or three sequences at a time, where all eight need up to 8 blocks each
        final long blockBytes = 2L * weights.config().layers() * 16 * weights.config().kvDim() * 4;
        try (Engine engine = Engine.launch(context(14 * blockBytes)))
        {
            final List<Engine.Handle> handles = new ArrayList<>();
            for (final int[] p : prompts)
            {
                handles.add(engine.submit(GenerationRequest.of(p, SamplerConfig.greedy(), maxTokens), c -> { }));
            }
            int preempted = 0;
            for (int i = 0; i < prompts.length; i++)
            {
                final Completion c = handles.get(i).completion().get(60, TimeUnit.SECONDS);
                assertEquals(FinishReason.LENGTH, c.reason(), () -> "" + c.error());
                assertArrayEquals(alone(prompts[i], SamplerConfig.greedy(), maxTokens), c.tokens(), "request " + i);
                preempted += c.preemptions();
            }
            final Engine.Stats stats = engine.stats();
            assertTrue(stats.preemptions() > 0 && preempted > 0, "no preemption: the test no longer tests it");
            assertTrue(stats.kvBlocksPeak() <= stats.kvBlocks(), "peak " + stats.kvBlocksPeak());
            awaitTrue(() -> engine.stats().kvBlocksInUse() == 0, "every block released");
        }
    }

    /**
     * Blocks held outside the scheduler (a run reserved for a KV import, or a prefill's KV kept until its transfer
     * ends) come back later from another thread: a request that needs them waits, with nothing running, and then
     * gets its tokens. (The engine thread used to fail with "KV pool exhausted with nothing running".)
     */
    @Test
    void shouldWaitForBlocksHeldOutsideTheSchedulerInsteadOfFailing() throws Exception
    {
        open(GgmlType.F32);
        final int[] prompt = prompts(1, 29)[0];
        final long blockBytes = 2L * weights.config().layers() * 16 * weights.config().kvDim() * 4;
        try (Engine engine = Engine.launch(context(8 * blockBytes)))
        {
            final Engine.KvRun held = engine.reserve(java.util.stream.IntStream.range(0, 6 * 16).map(i -> 3 + i % 50)
                .toArray(), 0).get(30, TimeUnit.SECONDS);
            assertEquals(6, held.blocks().length);
            final Engine.Handle h = engine.submit(GenerationRequest.of(prompt, SamplerConfig.greedy(), 40), c -> { });
            Thread.sleep(300);
            assertFalse(h.completion().isDone(), "the request cannot fit while 6 of 8 blocks are held");
            engine.release(held);
            final Completion c = h.completion().get(60, TimeUnit.SECONDS);
            assertEquals(FinishReason.LENGTH, c.reason(), () -> "" + c.error());
            assertArrayEquals(alone(prompt, SamplerConfig.greedy(), 40), c.tokens());
            awaitTrue(() -> engine.stats().kvBlocksInUse() == 0, "every block released");
        }
    }

    @Test
    void shouldFreeTheBlocksOfACancelledRequestAndKeepServingTheOthers() throws Exception
    {
        open(GgmlType.F32);
        final int[][] prompts = prompts(3, 17);
        try (Engine engine = Engine.launch(context(8L << 20)))
        {
            final CountDownLatch started = new CountDownLatch(5);
            final Engine.Handle doomed = engine.submit(GenerationRequest.of(prompts[0], SamplerConfig.greedy(), 400),
                new GenerationListener()
                {
                    @Override
                    public void onToken(final TokenEvent event)
                    {
                        started.countDown();
                    }

                    @Override
                    public void onComplete(final Completion completion)
                    {
                    }
                });
            final Engine.Handle other = engine.submit(GenerationRequest.of(prompts[1], SamplerConfig.greedy(), 30),
                c -> { });
            assertTrue(started.await(30, TimeUnit.SECONDS));
            doomed.cancel();
            final Completion c = doomed.completion().get(30, TimeUnit.SECONDS);
            assertEquals(FinishReason.CANCELLED, c.reason());
            assertTrue(c.completionTokens() < 400);
            assertArrayEquals(alone(prompts[1], SamplerConfig.greedy(), 30), other.completion().get().tokens());
            awaitTrue(() -> engine.stats().kvBlocksInUse() == 0 && engine.stats().running() == 0, "blocks freed");
            doomed.cancel(); // harmless once ended
            assertArrayEquals(alone(prompts[2], SamplerConfig.greedy(), 5),
                engine.generate(GenerationRequest.of(prompts[2], SamplerConfig.greedy(), 5)).tokens());
        }
    }

    @Test
    void shouldRefuseBadRequestsClearlyAndKeepServing() throws Exception
    {
        open(GgmlType.F32);
        final int context = 64;
        final long blockBytes = 2L * weights.config().layers() * 16 * weights.config().kvDim() * 4;
        try (Engine engine = Engine.launch(context(3 * blockBytes).maxContext(context)))
        {
            final Engine.Handle running = engine.submit(GenerationRequest.of(new int[] {1, 2, 3}, SamplerConfig
                .greedy(), 20), c -> { });
            final IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class, () ->
                engine.submit(GenerationRequest.of(new int[context], SamplerConfig.greedy(), 4), c -> { }));
            assertTrue(tooLong.getMessage().contains("does not fit the context of 64"), tooLong.getMessage());
            final IllegalArgumentException tooBig = assertThrows(IllegalArgumentException.class, () ->
                engine.submit(GenerationRequest.of(new int[40], SamplerConfig.greedy(), 20), c -> { }));
            assertTrue(tooBig.getMessage().contains("KV pool holds 3"), tooBig.getMessage());
            final IllegalArgumentException empty = assertThrows(IllegalArgumentException.class, () ->
                GenerationRequest.of(new int[0], SamplerConfig.greedy(), 4));
            assertTrue(empty.getMessage().contains("empty prompt"), empty.getMessage());
            final IllegalArgumentException token = assertThrows(IllegalArgumentException.class, () ->
                engine.submit(GenerationRequest.of(new int[] {1, vocab}, SamplerConfig.greedy(), 4), c -> { }));
            assertTrue(token.getMessage().contains("outside the vocabulary"), token.getMessage());
            final IllegalArgumentException noTokenizer = assertThrows(IllegalArgumentException.class, () ->
                engine.submit(new GenerationRequest(new int[] {1}, SamplerConfig.greedy(), 4, null, List.of("x"), -1),
                    c -> { }));
            assertTrue(noTokenizer.getMessage().contains("tokenizer"), noTokenizer.getMessage());
            assertArrayEquals(alone(new int[] {1, 2, 3}, SamplerConfig.greedy(), 20),
                running.completion().get(30, TimeUnit.SECONDS).tokens());
        }
        assertThrows(IllegalArgumentException.class, () -> new KvBlockPool(weights.config(), KvBlockPool.KvType.F16,
            16, 100));
    }

    @Test
    void shouldStopAtStopStringsAndStopTokensAndReportLogprobs() throws Exception
    {
        open(GgmlType.F32);
        final Tokenizer tokenizer = Tokenizer.fromGguf(file.metadata());
        final int[] prompt = tokenizer.encode("Once upon a time", true, false);
        try (Engine engine = Engine.launch(context(8L << 20).tokenizer(tokenizer).endOfGeneration(t -> false)))
        {
            final Completion full = engine.generate(GenerationRequest.of(prompt, SamplerConfig.greedy(), 40));
            assertEquals(tokenizer.decode(full.tokens()), full.text());
            // a stop string from the middle of the text: the text ends just before it
            final String text = full.text();
            assertTrue(text.length() > 10, "text " + text);
            final String stop = text.substring(text.length() / 2, text.length() / 2 + 3);
            final List<TokenEvent> events = new ArrayList<>();
            final Completion cut = engine.submit(new GenerationRequest(prompt, SamplerConfig.greedy(), 40, null,
                List.of("never appears \u2603", stop), 3), new GenerationListener()
            {
                @Override
                public void onToken(final TokenEvent event)
                {
                    events.add(event);
                }

                @Override
                public void onComplete(final Completion completion)
                {
                }
            }).completion().get();
            assertEquals(FinishReason.STOP, cut.reason());
            assertEquals(text.substring(0, text.indexOf(stop)), cut.text());
            final StringBuilder streamed = new StringBuilder();
            events.forEach(e -> streamed.append(e.text()));
            assertEquals(cut.text(), streamed.toString());
            for (final TokenEvent e : events)
            {
                // greedy: the chosen token is the most likely, and the top list is sorted
                assertEquals(e.topTokens()[0], e.token());
                assertEquals(e.topLogprobs()[0], e.logprob(), 1e-6f);
                assertTrue(e.topLogprobs()[0] >= e.topLogprobs()[1] && e.topLogprobs()[1] >= e.topLogprobs()[2]);
                assertTrue(e.logprob() <= 0f);
            }
            // a stop token: the sequence ends on it
            final int stopToken = full.tokens()[5];
            final Completion byToken = engine.generate(new GenerationRequest(prompt, SamplerConfig.greedy(), 40,
                new int[] {stopToken}, null, -1));
            assertEquals(FinishReason.STOP, byToken.reason());
            final int at = indexOf(full.tokens(), stopToken);
            assertArrayEquals(Arrays.copyOf(full.tokens(), at + 1), byToken.tokens());
        }
    }

    @Test
    void shouldApplyPresenceAndFrequencyPenaltiesToGeneratedTokensOnly() throws Exception
    {
        open(GgmlType.F32);
        final int[] prompt = prompts(1, 23)[0];
        final float presence = 0.7f;
        final float frequency = 1.1f;
        // reference: the lone path with a greedy sampler that subtracts the penalties over the generated tokens
        final java.util.Map<Integer, Integer> counts = new java.util.HashMap<>();
        final int[] accepted = {0};
        final Sampler penalized = new Sampler()
        {
            @Override
            public int sample(final float[] logits)
            {
                counts.forEach((t, n) -> logits[t] -= presence + frequency * n);
                int best = 0;
                for (int i = 1; i < logits.length; i++)
                {
                    best = logits[i] > logits[best] ? i : best;
                }
                return best;
            }

            @Override
            public void accept(final int token)
            {
                if (accepted[0]++ >= prompt.length)
                {
                    counts.merge(token, 1, Integer::sum);
                }
            }

            @Override
            public void reset()
            {
            }
        };
        final int[] expected = new Generator(new Llama(weights, pool, 64)).generate(prompt, 40, 512, penalized,
            t -> false, t -> true).tokens();
        try (Engine engine = Engine.launch(context(8L << 20)))
        {
            final Completion c = engine.generate(new GenerationRequest(prompt, SamplerConfig.greedy(), 40, null, null,
                -1, presence, frequency));
            assertArrayEquals(expected, c.tokens());
            // and the penalties change something here, or this test would not test them
            final Completion plain = engine.generate(GenerationRequest.of(prompt, SamplerConfig.greedy(), 40));
            assertTrue(!Arrays.equals(plain.tokens(), c.tokens()), "penalties changed nothing");
        }
    }

    private static int indexOf(final int[] a, final int v)
    {
        for (int i = 0; i < a.length; i++)
        {
            if (a[i] == v)
            {
                return i;
            }
        }
        return -1;
    }

    private static int[] concat(final int[] a, final int... b)
    {
        final int[] r = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean())
        {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for: " + what);
            Thread.sleep(5);
        }
    }

    /**
     * Long prompts (more than four steps' budget) take turns, oldest first, where they used to share the budget: the
     * first one's first token comes after its own prefill, well before the last one's, not with it. A short prompt
     * and a medium one (more than a step's budget, less than four) submitted behind them
     * start at once, beside the first, and finish before it. Every request still gets the tokens of running alone.
     */
    @Test
    void shouldPrefillLongPromptsOneAtATimeOldestFirstWithShortOnesBeside() throws Exception
    {
        open(GgmlType.F32);
        final Random random = new Random(72);
        // 8 prompt rows a step: the first long prompt takes dozens of steps alone, so the later submissions are in
        // before it ends even if this thread is descheduled for a while; long means over 32 rows to go
        final int[][] prompts = {random.ints(300, 0, vocab).toArray(), random.ints(300, 0, vocab).toArray(),
            random.ints(300, 0, vocab).toArray(), random.ints(5, 0, vocab).toArray(),
            random.ints(20, 0, vocab).toArray()};
        final long[] firstTokenStep = new long[prompts.length];
        try (Engine engine = Engine.launch(context(16L << 20).maxPrefillTokens(8)))
        {
            final Engine.Handle[] handles = new Engine.Handle[prompts.length];
            for (int i = 0; i < prompts.length; i++)
            {
                final int r = i;
                handles[i] = engine.submit(GenerationRequest.of(prompts[i], SamplerConfig.greedy(), 3),
                    new GenerationListener()
                    {
                        @Override
                        public void onToken(final TokenEvent event)
                        {
                            if (firstTokenStep[r] == 0)
                            {
                                firstTokenStep[r] = engine.stats().steps(); // the engine thread's own count
                            }
                        }

                        @Override
                        public void onComplete(final Completion completion)
                        {
                        }
                    });
            }
            for (int i = 0; i < prompts.length; i++)
            {
                assertArrayEquals(alone(prompts[i], SamplerConfig.greedy(), 3),
                    handles[i].completion().get(60, TimeUnit.SECONDS).tokens(), "request " + i);
            }
        }
        final String steps = Arrays.toString(firstTokenStep);
        assertTrue(firstTokenStep[3] < firstTokenStep[0] && firstTokenStep[4] < firstTokenStep[0],
            "the short and the medium prompt before the first long one: " + steps);
        assertTrue(firstTokenStep[0] < firstTokenStep[1] && firstTokenStep[1] < firstTokenStep[2], steps);
        // sharing the budget, the three long ones came out together
        assertTrue(3 * firstTokenStep[0] < 2 * firstTokenStep[2],
            "the oldest long prompt's first token in the first two thirds of the steps: " + steps);
    }

    /**
     * A short prompt submitted behind a long one starts while the long one is still being prefilled (the long
     * prompt's chunks take half the budget while prompts wait), so its first token comes first; both still give the
     * tokens of running alone.
     */
    @Test
    void shouldStartAShortPromptWhileALongOneIsPrefilled() throws Exception
    {
        open(GgmlType.F32);
        final Random random = new Random(71);
        // 8 prompt rows a step: the long prompt takes dozens of steps, so the short one is submitted before it ends
        // even if this thread is descheduled for a while (with 150 rows at 16 a step, a loaded full-suite run once
        // finished the long prefill before the short prompt arrived)
        final int[] longPrompt = random.ints(300, 0, vocab).toArray();
        final int[] shortPrompt = random.ints(5, 0, vocab).toArray();
        final List<String> firstTokens = java.util.Collections.synchronizedList(new ArrayList<>());
        try (Engine engine = Engine.launch(context(16L << 20).maxPrefillTokens(8)))
        {
            final Engine.Handle[] handles = new Engine.Handle[2];
            final String[] names = {"long", "short"};
            final int[][] prompts = {longPrompt, shortPrompt};
            for (int i = 0; i < 2; i++)
            {
                final String name = names[i];
                handles[i] = engine.submit(new GenerationRequest(prompts[i], SamplerConfig.greedy(), 3, new int[0],
                    List.of(), 0), new GenerationListener()
                    {
                        private boolean first = true;

                        @Override
                        public void onToken(final TokenEvent event)
                        {
                            if (first)
                            {
                                first = false;
                                firstTokens.add(name);
                            }
                        }

                        @Override
                        public void onComplete(final Completion completion)
                        {
                        }
                    });
            }
            final Completion longDone = handles[0].completion().get(60, TimeUnit.SECONDS);
            final Completion shortDone = handles[1].completion().get(60, TimeUnit.SECONDS);
            assertEquals(List.of("short", "long"), firstTokens);
            assertArrayEquals(alone(longPrompt, SamplerConfig.greedy(), 3), longDone.tokens());
            assertArrayEquals(alone(shortPrompt, SamplerConfig.greedy(), 3), shortDone.tokens());
        }
    }

}
