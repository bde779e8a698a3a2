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
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The two halves of a split request in one process: one engine prefills all but the last prompt token and holds
 * the blocks ({@link Engine#prefill}), their bytes are copied into blocks another engine reserved
 * ({@link Engine#reserve}), and that engine decodes from them. The tokens must equal the lone-sequence path's,
 * greedy and sampled (the decode side does every sampling step, so seeds give the same tokens).
 */
class KvHandoverTest
{
    @TempDir
    Path dir;

    private GgufFile file;
    private GgufWeightSource weights;
    private ThreadPool pool;
    private int vocab;

    @BeforeEach
    void open() throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=64,layers=2,heads=4,kv=2,ffn=96"),
            GgmlType.Q8_0, null, 5);
        file = GgufFile.open(model);
        weights = new GgufWeightSource(file, false);
        pool = new ThreadPool(2);
    }

    @AfterEach
    void close()
    {
        pool.close();
        weights.close();
        file.close();
    }

    private Engine engine(final long kvMemory)
    {
        return engine(kvMemory, KvBlockPool.KvType.F16);
    }

    /** An 8-bit pool's engine is batch-invariant, as the nodes of a split deployment are (see the handover test). */
    private Engine engine(final long kvMemory, final KvBlockPool.KvType type)
    {
        return Engine.launch(new Engine.Context().weights(weights).pool(pool).modelVersion("v1")
            .batchInvariant(type == KvBlockPool.KvType.Q8).kvType(type).kvMemory(kvMemory).blockTokens(16).maxBatchSize(8).maxPrefillTokens(40));
    }

    private int[] alone(final int[] prompt, final SamplerConfig sampling, final int maxTokens)
    {
        return new Generator(new Llama(weights, pool, 64)).generate(prompt, maxTokens, 512, Sampler.create(sampling),
            t -> false, t -> true).tokens();
    }

    /** Prefills on {@code from}, copies the blocks the reservation does not have, and decodes on {@code to}. */
    private static Completion handOver(final Engine from, final Engine to, final GenerationRequest request,
        final int[] cachedBlocks) throws Exception
    {
        final int[] prompt = request.prompt();
        final int[] prefix = Arrays.copyOf(prompt, prompt.length - 1);
        final CompletableFuture<Engine.KvRun> prefilled = new CompletableFuture<>();
        from.prefill(prefix, new Engine.PrefillListener()
        {
            @Override
            public void onPrefilled(final Engine.KvRun kv)
            {
                prefilled.complete(kv);
            }

            @Override
            public void onFailed(final String error)
            {
                prefilled.completeExceptionally(new IllegalStateException(error));
            }
        });
        final Engine.KvRun source = prefilled.get(60, TimeUnit.SECONDS);
        assertEquals(prefix.length, source.tokens());
        final Engine.KvRun target = to.reserve(prefix, 0).get(60, TimeUnit.SECONDS);
        assertNotNull(target, "room for the transfer");
        assertEquals(source.blocks().length, target.blocks().length);
        cachedBlocks[0] = target.cachedBlocks();
        for (int b = target.cachedBlocks(); b < target.blocks().length; b++)
        {
            to.kvPool().block(target.blocks()[b]).copyFrom(from.kvPool().block(source.blocks()[b]));
        }
        from.release(source);
        return to.submit(request, c -> { }, target).completion().get(60, TimeUnit.SECONDS);
    }

    /**
     * F32 and F16: the handed-over request against the lone-sequence path. Q8: against the same request on one
     * engine of the same kind (the 8-bit pool's attention quantizes the query, which the lone path does not); both
     * engines batch-invariant, so the last prompt token, which the decode side computes, gets the bits it has there.
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.EnumSource(KvBlockPool.KvType.class)
    void shouldDecodeFromTransferredBlocksExactlyAsFromItsOwnPrefill(final KvBlockPool.KvType type) throws Exception
    {
        final Random random = new Random(11);
        try (Engine prefill = engine(8L << 20, type); Engine decode = engine(8L << 20, type);
            Engine colocated = engine(8L << 20, type))
        {
            // lengths around block boundaries: the prefix ends inside, at the end of, and just after a block
            for (final int length : new int[]{2, 16, 17, 18, 33, 47, 60})
            {
                final int[] prompt = random.ints(length, 0, vocab).toArray();
                final int[] cached = new int[1];
                final GenerationRequest greedy = GenerationRequest.of(prompt, SamplerConfig.greedy(), 20);
                final Completion g = handOver(prefill, decode, greedy, cached);
                assertEquals(FinishReason.LENGTH, g.reason());
                assertArrayEquals(expected(colocated, greedy, type), g.tokens(), "greedy, " + length);
                final GenerationRequest sampled = GenerationRequest.of(prompt, SamplerConfig.defaults(1000 + length),
                    20);
                final Completion c = handOver(prefill, decode, sampled, cached);
                assertArrayEquals(expected(colocated, sampled, type), c.tokens(), "sampled, " + length);
                // the second transfer of the same prompt finds its full blocks in the decode side's prefix cache
                assertEquals((length - 1) / 16, cached[0], "cached blocks of the second transfer, " + length);
            }
            awaitIdle(prefill);
            awaitIdle(decode);
        }
    }

    private int[] expected(final Engine colocated, final GenerationRequest request, final KvBlockPool.KvType type)
        throws Exception
    {
        return type == KvBlockPool.KvType.Q8 ? colocated.generate(request).tokens() :
            alone(request.prompt(), request.sampling(), request.maxTokens());
    }

    /**
     * A request moved to another node continues from its prompt plus the tokens it had generated, prefilled
     * again: the prefill must give those tokens the keys and values their decode steps gave them, or greedy decoding
     * drifts. Checked on the Java kernels and, where the library was built, on the native ones (whose batched
     * product is bit-identical to the single-token one for that reason), with F16 KV, and with 8-bit KV on a
     * batch-invariant engine (as split nodes run).
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"java,F16", "native,F16", "java,Q8", "native,Q8"})
    void shouldContinueARequestPrefilledAgainWithTheTokensItWouldHaveHad(final String kernels,
        final KvBlockPool.KvType type) throws Exception
    {
        final String before = System.getProperty(dev.strata.compute.tensor.Kernels.PROPERTY);
        System.setProperty(dev.strata.compute.tensor.Kernels.PROPERTY, kernels);
        try
        {
            org.junit.jupiter.api.Assumptions.assumeTrue(kernels.equals("java") ||
                dev.strata.compute.tensor.Kernels.fromSystemProperties().isNative(), "no native kernels in this build");
            final Path model = dir.resolve("wide.gguf");
            final int v = SyntheticModel.write(model, SyntheticModel.Shape.parse(
                "dim=384,layers=6,heads=6,kv=3,ffn=1024,context=2048"), GgmlType.Q8_0, null, 9);
            try (GgufFile f = GgufFile.open(model); GgufWeightSource w = new GgufWeightSource(f, false);
                Engine e = Engine.launch(new Engine.Context().weights(w).pool(pool).modelVersion("v")
                    .batchInvariant(type == KvBlockPool.KvType.Q8).kvType(type).kvMemory(64L << 20)
                    .maxPrefillTokens(64)))
            {
                final int[] prompt = new Random(1).ints(40, 3, v).toArray();
                final int[] full = e.generate(new GenerationRequest(prompt, SamplerConfig.greedy(), 200, null, null,
                    -1, 0f, 0f, true)).tokens();
                for (final int moved : new int[]{1, 20, 77})
                {
                    final int[] again = Arrays.copyOf(prompt, prompt.length + moved);
                    System.arraycopy(full, 0, again, prompt.length, moved);
                    final int[] rest = e.generate(new GenerationRequest(again, SamplerConfig.greedy(), 200 - moved,
                        null, null, -1, 0f, 0f, true)).tokens();
                    assertArrayEquals(Arrays.copyOfRange(full, moved, 200), rest, kernels + ", " + type +
                        ", moved after " + moved);
                }
            }
        }
        finally
        {
            if (before == null)
            {
                System.clearProperty(dev.strata.compute.tensor.Kernels.PROPERTY);
            }
            else
            {
                System.setProperty(dev.strata.compute.tensor.Kernels.PROPERTY, before);
            }
        }
    }

    @Test
    void shouldRefuseAReservationThatWouldEatTheHeadroomAndHoldNothing() throws Exception
    {
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), KvBlockPool.KvType.F16, 16);
        try (Engine decode = engine(10 * blockBytes))
        {
            final int[] prompt = new Random(3).ints(64, 0, vocab).toArray();
            assertNull(decode.reserve(prompt, 7).get(30, TimeUnit.SECONDS), "4 blocks + 7 headroom > 10");
            assertEquals(0, decode.kvPool().inUse(), "a refused reservation holds nothing");
            final Engine.KvRun run = decode.reserve(prompt, 6).get(30, TimeUnit.SECONDS);
            assertNotNull(run);
            assertEquals(4, run.blocks().length);
            decode.release(run);
            awaitIdle(decode);
        }
    }

    /**
     * The contract a transfer that streams each layer as it lands rests on ({@link Engine.PrefillListener}): a
     * prefill preempted part way tells its listener {@code onReleased} while it still holds every block it reported,
     * and what it reported before comes out of the prefill's second run with the same bytes, so the parts already
     * sent stay right. Two 100-token prompts in a pool of 10 blocks of 16: the newer is preempted, and runs again
     * once the first's KV is given back.
     */
    @Test
    void shouldTellAPreemptedPrefillBeforeItsBlocksGoBackAndRecomputeWhatItReportedWithTheSameBytes() throws Exception
    {
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), KvBlockPool.KvType.F16, 16);
        final Random random = new Random(17);
        try (Engine engine = engine(10 * blockBytes))
        {
            final KvBlockPool kv = engine.kvPool();
            final int layers = weights.config().layers();
            final long layerBytes = kv.blockBytes() / layers;
            final class Watch implements Engine.PrefillListener
            {
                final CompletableFuture<Engine.KvRun> done = new CompletableFuture<>();
                final java.util.concurrent.CountDownLatch gate = new java.util.concurrent.CountDownLatch(1);
                final java.util.Map<Long, byte[]> reported = new java.util.HashMap<>(); // (layer, block) -> bytes
                int[] held = new int[0];
                int releases;
                int reportedBeforeRelease;
                String heldBack;

                @Override
                public void onLayerStored(final int layer, final int positions, final int[] blocks)
                {
                    try
                    {
                        // the engine thread waits here until the test let it go: both prompts are then in the
                        // engine before its second step, however slowly the test thread ran
                        assertTrue(gate.await(30, TimeUnit.SECONDS));
                    }
                    catch (final InterruptedException e)
                    {
                        Thread.currentThread().interrupt();
                    }
                    held = blocks.clone();
                    for (int b = 0; (b + 1) * kv.blockTokens() <= positions; b++)
                    {
                        reported.putIfAbsent((long)layer << 32 | b,
                            kv.block(blocks[b]).asSlice(layer * layerBytes, layerBytes).toArray(
                                java.lang.foreign.ValueLayout.JAVA_BYTE));
                    }
                }

                @Override
                public void onReleased()
                {
                    releases++;
                    reportedBeforeRelease = reported.size();
                    for (final int id : held)
                    {
                        if (kv.refCount(id) <= 0 && heldBack == null)
                        {
                            heldBack = "block " + id + " went back to the pool before onReleased";
                        }
                    }
                }

                @Override
                public void onPrefilled(final Engine.KvRun run)
                {
                    done.complete(run);
                }

                @Override
                public void onFailed(final String error)
                {
                    done.completeExceptionally(new IllegalStateException(error));
                }
            }
            final Watch first = new Watch();
            final Watch second = new Watch();
            second.gate.countDown();
            engine.prefill(random.ints(100, 0, vocab).toArray(), first);
            engine.prefill(random.ints(100, 0, vocab).toArray(), second);
            first.gate.countDown();
            engine.release(first.done.get(60, TimeUnit.SECONDS));
            final Engine.KvRun run = second.done.get(60, TimeUnit.SECONDS);
            assertEquals(0, first.releases, "the older prefill ran through");
            assertTrue(second.releases > 0 && second.reportedBeforeRelease > 0,
                "the newer was preempted after it reported blocks: the test no longer tests it (" +
                    second.releases + " releases, " + second.reportedBeforeRelease + " reported)");
            assertNull(second.heldBack);
            for (final java.util.Map.Entry<Long, byte[]> e : second.reported.entrySet())
            {
                final int layer = (int)(e.getKey() >>> 32);
                final int b = (int)(long)e.getKey();
                assertArrayEquals(e.getValue(), kv.block(run.blocks()[b]).asSlice(layer * layerBytes, layerBytes)
                    .toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), "layer " + layer + ", block " + b);
            }
            engine.release(run);
            awaitIdle(engine);
        }
    }

    private static void awaitIdle(final Engine engine) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (engine.kvPool().inUse() != 0)
        {
            assertTrue(System.nanoTime() < deadline, "blocks still in use: " + engine.kvPool().inUse());
            Thread.sleep(5);
        }
    }
}
