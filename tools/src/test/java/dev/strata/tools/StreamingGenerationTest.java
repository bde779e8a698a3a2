package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.Generator;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvCache;
import dev.strata.compute.model.Llama;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.stream.RemoteModel;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramserver.ParamService;
import dev.strata.prefetch.AccessTrace;
import dev.strata.prefetch.PrefetchStats;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.function.IntPredicate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A stateless node streaming its weights from a parameter service generates exactly what the local runtime
 * generates from the same GGUF (greedy), with any memory budget it accepts, never holding more than that budget;
 * it stays on the version it pinned while another is promoted.
 */
class StreamingGenerationTest
{
    private static final String TOKEN = "stream-token";
    private static final int[] PROMPT = {1, 72, 101, 108, 108, 111};
    private static final int NEW_TOKENS = 24;

    @TempDir
    static Path models;

    static Path v1;
    static Path v2;

    @TempDir
    Path data;

    ParamService service;
    ParamClient client;

    @BeforeAll
    static void synthesize() throws Exception
    {
        final SyntheticModel.Shape shape = SyntheticModel.Shape.parse("dim=256,layers=12,heads=8,kv=4,ffn=768");
        v1 = models.resolve("v1.gguf");
        SyntheticModel.write(v1, shape, GgmlType.Q8_0, null, 1);
        v2 = models.resolve("v2.gguf");
        SyntheticModel.write(v2, shape, GgmlType.Q8_0, null, 2);
    }

    @BeforeEach
    void start() throws Exception
    {
        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        client = new ParamClient("localhost:" + service.adminPort(), TOKEN);
    }

    @AfterEach
    void stop()
    {
        service.close();
    }

    private void upload(final Path file, final String name, final String label)
    {
        final CliTest.Run r = CliTest.run("model", "upload", file.toString(), "--name", name, "--label", label,
            "--server", "localhost:" + service.adminPort(), "--token", TOKEN);
        assertEquals(0, r.code(), r.err());
    }

    static int[] generate(final WeightSource weights, final int[] prompt, final int n, final Generator.TokenListener
        listener)
    {
        try (ThreadPool pool = new ThreadPool(2))
        {
            final Llama llama = new Llama(weights, pool, 8);
            final IntPredicate never = t -> false;
            return new Generator(llama).generate(prompt, n, 256, Sampler.create(SamplerConfig.greedy()), never,
                listener).tokens();
        }
    }

    static int[] local(final Path file)
    {
        try (GgufFile gguf = GgufFile.open(file); GgufWeightSource w = new GgufWeightSource(gguf, false))
        {
            return generate(w, PROMPT, NEW_TOKENS, t -> true);
        }
        catch (final java.io.IOException ex)
        {
            throw new java.io.UncheckedIOException(ex);
        }
    }

    @Test
    void shouldGenerateTheLocalTokensWithTheWholeModelAQuarterAndTheMinimumBudget() throws Exception
    {
        upload(v1, "llama", "stable");
        final int[] expected = local(v1);
        long full = 0;
        for (final double fraction : new double[]{1.0, 0.25, 0.0})
        {
            for (final boolean prefetch : new boolean[]{true, false})
            {
                try (RemoteModel model = RemoteModel.open(client, "llama", "stable", "node-1", 60_000))
                {
                    if (full == 0)
                    {
                        full = model.totalBytes() + 64L * 64; // the node's alignment padding
                    }
                    final long budget = fraction == 0 ? minimumBudget(model) : (long)(full * fraction);
                    final PrefetchStats stats = new PrefetchStats();
                    try (StreamingWeightSource w = new StreamingWeightSource(model,
                        StreamingWeightSource.Options.defaults(budget).withPrefetch(prefetch), stats))
                    {
                        final int[] got = generate(w, PROMPT, NEW_TOKENS, t -> true);
                        final String what = "budget " + fraction + " of the model, prefetch " + prefetch;
                        assertArrayEquals(expected, got, what);
                        assertTrue(w.peakBytes() <= budget, what + ": peak " + w.peakBytes() + " > " + budget);
                        final PrefetchStats.Report r = stats.report();
                        if (fraction == 0.25 && prefetch) // the minimum budget has no room to prefetch into
                        {
                            assertTrue(r.prefetchIssued() > 0, what + ": prefetches were issued");
                            assertTrue(r.coverage() > 0.5, what + ": " + r);
                            // and the service was told what comes after, to promote it toward its memory tier
                            assertTrue(w.hintsSent() > 0, what + ": hints sent");
                            ParamServiceTest.awaitCondition(() -> service.blockServer().hinted() > 0,
                                "the service took a hint");
                        }
                        if (!prefetch)
                        {
                            assertEquals(0, r.prefetchIssued(), what);
                        }
                        if (fraction == 1.0)
                        {
                            assertTrue(r.demandFetches() + r.prefetchIssued() <= 12, what + ": each layer fetched " +
                                "once when the model fits: " + r);
                        }
                    }
                }
            }
        }
    }

    /**
     * A prefill and a decode worker share one node's weights: two callers generate at once from one source whose
     * budget holds a single layer besides the globals, so they take turns at it (a caller whose layer finds the
     * budget full of the other's pinned layer waits for its release instead of failing). Each gets the tokens it
     * would get alone, and the budget holds.
     */
    @Test
    void shouldServeTwoConcurrentCallersTheirOwnTokensWithinTheBudget() throws Exception
    {
        upload(v1, "llama", "stable");
        final int tokens = 6;
        final int[] expected = Arrays.copyOf(local(v1), tokens);
        try (RemoteModel model = RemoteModel.open(client, "llama", "stable", "node-1", 60_000))
        {
            final long budget = minimumBudget(model);
            try (StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(budget), new PrefetchStats()))
            {
                final java.util.concurrent.ExecutorService two = java.util.concurrent.Executors.newFixedThreadPool(2);
                try
                {
                    final java.util.concurrent.Future<int[]> a = two.submit(() -> generate(w, PROMPT, tokens, t -> true));
                    final java.util.concurrent.Future<int[]> b = two.submit(() -> generate(w, PROMPT, tokens, t -> true));
                    assertArrayEquals(expected, a.get(5, TimeUnit.MINUTES), "first caller");
                    assertArrayEquals(expected, b.get(5, TimeUnit.MINUTES), "second caller");
                }
                finally
                {
                    two.shutdownNow();
                }
                assertTrue(w.peakBytes() <= budget, "peak " + w.peakBytes() + " > " + budget);
            }
        }
    }

    private static long minimumBudget(final RemoteModel model)
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
            () -> new StreamingWeightSource(model, StreamingWeightSource.Options.defaults(1 << 16), new PrefetchStats()));
        assertTrue(ex.getMessage().contains("too small"), ex.getMessage());
        return Long.parseLong(ex.getMessage().replaceAll(".*needs at least (\\d+) .*", "$1"));
    }

    @Test
    void shouldStayOnThePinnedVersionWhenAnotherIsPromotedMidGeneration() throws Exception
    {
        upload(v1, "llama", "stable");
        upload(v2, "llama", "canary");
        final int[] expected1 = local(v1);
        final int[] expected2 = local(v2);
        assertFalse(Arrays.equals(expected1, expected2), "the two versions generate different text");
        try (RemoteModel model = RemoteModel.open(client, "llama", "stable", "node-1", 60_000);
            StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(1L << 30), new PrefetchStats()))
        {
            assertEquals(1, model.version());
            final int[] count = {0};
            final int[] got = generate(w, PROMPT, NEW_TOKENS, t ->
            {
                if (++count[0] == 5)
                {
                    try
                    {
                        client.promote("llama", 2);
                    }
                    catch (final java.io.IOException ex)
                    {
                        throw new java.io.UncheckedIOException(ex);
                    }
                }
                return true;
            });
            assertEquals(2, client.show("llama", "stable").version(), "v2 was promoted meanwhile");
            assertArrayEquals(expected1, got, "the running generation stayed on v1");
            // the node's lease keeps v1 from deletion while it runs
            final ParamClient.ServiceException refused = assertThrows(ParamClient.ServiceException.class,
                () -> client.delete("llama", 1));
            assertTrue(refused.getMessage().contains("leased by node-1"), refused.getMessage());
        }
        try (RemoteModel model = RemoteModel.open(client, "llama", "stable", "node-1", 60_000);
            StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(1L << 30), new PrefetchStats()))
        {
            assertEquals(2, model.version());
            assertArrayEquals(expected2, generate(w, PROMPT, NEW_TOKENS, t -> true), "the next generation uses v2");
        }
        client.delete("llama", 1); // lease released on close
    }

    @Test
    void shouldRetryThroughAServiceRestartOrFailClearlyAfterABoundedWait() throws Exception
    {
        upload(v1, "llama", "stable");
        final int[] expected = local(v1);
        final int port = service.adminPort();
        try (RemoteModel model = RemoteModel.open(client, "llama", "stable", "node-1", 60_000))
        {
            final long budget = minimumBudget(model); // every layer is fetched again for every token
            try (StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(budget), new PrefetchStats()))
            {
                final int[] count = {0};
                final int[] got = generate(w, PROMPT, NEW_TOKENS, t ->
                {
                    if (++count[0] == 4)
                    {
                        // restart the service on the same data and admin port: its Aeron endpoints change
                        service.close();
                        try
                        {
                            service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)
                                .adminPort(port));
                        }
                        catch (final Exception ex)
                        {
                            throw new IllegalStateException(ex);
                        }
                    }
                    return true;
                });
                assertArrayEquals(expected, got, "the node retried and completed on the same version");
            }
            // with the service gone for good, the node fails with a clear error after its bounded wait
            try (StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(budget).withRetryFor(TimeUnit.SECONDS.toNanos(2)),
                new PrefetchStats()))
            {
                service.close();
                final long start = System.nanoTime();
                final RuntimeException ex = assertThrows(RuntimeException.class,
                    () -> generate(w, PROMPT, NEW_TOKENS, t -> true));
                final long waited = System.nanoTime() - start;
                assertTrue(String.valueOf(ex.getMessage()).contains("did not deliver") ||
                    String.valueOf(ex.getMessage()).contains("timed out"), String.valueOf(ex.getMessage()));
                assertTrue(waited < TimeUnit.SECONDS.toNanos(30), "bounded wait: " + waited / 1e9 + " s");
                service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
            }
        }
    }

    @Test
    void shouldGenerateThroughTheCliLikeTheLocalModelAndFailClearly() throws Exception
    {
        upload(v1, "llama", "stable");
        final String server = "localhost:" + service.adminPort();
        final CliTest.Run local = CliTest.run("generate", "-m", v1.toString(), "-p", "Hello", "-n", "12",
            "--temperature", "0");
        assertEquals(0, local.code(), local.err());
        for (final String budget : new String[]{"64M", "3M"})
        {
            final CliTest.Run remote = CliTest.run("generate", "--param-server", server, "--token", TOKEN,
                "-m", "llama:stable", "-p", "Hello", "-n", "12", "--temperature", "0", "--memory-budget", budget);
            assertEquals(0, remote.code(), remote.err());
            assertEquals(local.out(), remote.out(), "the same text streamed with a budget of " + budget);
            assertTrue(remote.err().contains("streaming llama@1") && remote.err().contains("prefetch accuracy"),
                remote.err());
        }
        final CliTest.Run tooSmall = CliTest.run("generate", "--param-server", server, "--token", TOKEN,
            "-m", "llama@1", "-p", "Hello", "--memory-budget", "100K");
        assertEquals(1, tooSmall.code());
        assertTrue(tooSmall.err().contains("too small") && tooSmall.err().contains("needs at least"), tooSmall.err());
        final CliTest.Run unknown = CliTest.run("generate", "--param-server", server, "--token", TOKEN,
            "-m", "nope:stable", "-p", "Hello");
        assertEquals(3, unknown.code(), unknown.err());
        final CliTest.Run badToken = CliTest.run("generate", "--param-server", server, "--token", "wrong",
            "-m", "llama@1", "-p", "Hello");
        assertEquals(4, badToken.code(), "a lease needs the token: " + badToken.err());
        final CliTest.Run down = CliTest.run("generate", "--param-server", "localhost:1", "--token", TOKEN,
            "-m", "llama@1", "-p", "Hello");
        assertEquals(6, down.code(), down.err());

        // expert traces: a dense model has none to write; a malformed trace file is named with its problem
        final Path trace = models.resolve("cli.trace");
        final CliTest.Run dense = CliTest.run("generate", "--param-server", server, "--token", TOKEN,
            "-m", "llama@1", "-p", "Hello", "--expert-trace-out", trace.toString());
        assertEquals(1, dense.code(), dense.err());
        assertTrue(dense.err().contains("not a mixture-of-experts model"), dense.err());
        assertFalse(Files.exists(trace));
        Files.writeString(trace, "strata-trace 1 units=4\n1 9\n");
        final CliTest.Run bad = CliTest.run("generate", "--param-server", server, "--token", TOKEN,
            "-m", "llama@1", "-p", "Hello", "--expert-trace-in", trace.toString());
        assertEquals(1, bad.code(), bad.err());
        assertTrue(bad.err().contains("unit 9 is outside 0..3") && bad.err().contains(trace.toString()), bad.err());
    }

    @Test
    void shouldStreamAMixtureOfExpertsModelToTheLocalTokens() throws Exception
    {
        final Path moe = models.resolve("moe.gguf");
        SyntheticModel.write(moe, SyntheticModel.Shape.parse("dim=128,layers=6,heads=4,kv=2,ffn=256,experts=4,used=2"),
            GgmlType.Q8_0, null, 3);
        upload(moe, "moe", "stable");
        final int[] expected = local(moe);
        AccessTrace trace = null;
        try (RemoteModel model = RemoteModel.open(client, "moe", "stable", "node-1", 60_000))
        {
            assertEquals(4, model.config().experts());
            final long budget = (model.totalBytes() + 64L * 64 * (7 + 6 * 4)) / 2;
            for (final boolean prefetch : new boolean[]{false, true})
            {
                final PrefetchStats stats = new PrefetchStats();
                try (StreamingWeightSource w = new StreamingWeightSource(model,
                    StreamingWeightSource.Options.defaults(budget).withPrefetch(prefetch), stats))
                {
                    assertTrue(w.streamsExperts(), "the importer cut the expert tensors at expert boundaries");
                    assertArrayEquals(expected, generate(w, PROMPT, NEW_TOKENS, t -> true), "prefetch " + prefetch);
                    assertTrue(w.peakBytes() <= budget);
                    final PrefetchStats.Report r = stats.report();
                    if (prefetch)
                    {
                        // experts of the next layer are guessed from the routing trace learned so far
                        assertTrue(r.prefetchIssued() > 0 && r.accuracy() > 0.3, r.toString());
                        trace = w.expertTrace();
                    }
                }
            }
            // the recorded trace: every expert access of the run, over the model's 6 x 4 expert units
            assertEquals(24, trace.units());
            assertTrue(trace.trace().length >= NEW_TOKENS * 6 * 2, "at least 2 experts per layer per token: " +
                trace.trace().length);
            final Path file = models.resolve("moe.trace");
            trace.write(file);

            // a fresh node trained on the trace guesses experts from its first forward pass; an untrained one cannot
            // (it has seen no expert's successor yet)
            final long[] guesses = new long[2];
            for (final boolean trained : new boolean[]{false, true})
            {
                final StreamingWeightSource.Options options = StreamingWeightSource.Options.defaults(budget)
                    .withExpertTraining(trained ? AccessTrace.read(file) : null);
                try (StreamingWeightSource w = new StreamingWeightSource(model, options, new PrefetchStats());
                    ThreadPool pool = new ThreadPool(1))
                {
                    new Llama(w, pool, PROMPT.length).forward(PROMPT, 0, PROMPT.length, 0,
                        new KvCache(model.config(), 16));
                    guesses[trained ? 1 : 0] = w.expertGuessesIssued();
                    if (trained)
                    {
                        assertArrayEquals(expected, generate(w, PROMPT, NEW_TOKENS, t -> true), "trained node");
                    }
                }
            }
            assertEquals(0, guesses[0], "untrained: no guesses in the first forward pass");
            assertTrue(guesses[1] > 0, "trained: guesses from the first forward pass");
        }
    }

    @Test
    void shouldStreamTheRealStoriesModelToTheGoldenTokens() throws Exception
    {
        final Path stories = CliTest.sharedModels().resolve("stories260K.gguf");
        Assumptions.assumeTrue(Files.exists(stories), "needs ../shared/models/stories260K.gguf");
        upload(stories, "stories", "stable");
        final int[] expected;
        try (GgufFile gguf = GgufFile.open(stories); GgufWeightSource w = new GgufWeightSource(gguf, false))
        {
            expected = generate(w, new int[]{1, 403, 407, 261, 378}, 40, t -> true);
        }
        try (RemoteModel model = RemoteModel.open(client, "stories", "stable", "node-1", 60_000);
            StreamingWeightSource w = new StreamingWeightSource(model,
                StreamingWeightSource.Options.defaults(minimumBudget(model)), new PrefetchStats()))
        {
            assertArrayEquals(expected, generate(w, new int[]{1, 403, 407, 261, 378}, 40, t -> true));
        }
    }

    /**
     * On the native kernels a Q4_0 model's matrices are repacked for VNNI: a local model into a copy, a streamed
     * unit in place in its buffer, again each time the minimum budget makes it land again. Both must give the local
     * tokens; skipped where the VNNI kernels cannot run.
     */
    @Test
    void shouldStreamAQ4_0ModelRepackedInPlaceToTheLocalTokens() throws Exception
    {
        final dev.strata.compute.tensor.Kernels vnni;
        try
        {
            vnni = dev.strata.compute.tensor.Kernels.of("avx512vnni");
        }
        catch (final IllegalArgumentException e)
        {
            Assumptions.abort(e.getMessage());
            return;
        }
        Assumptions.assumeTrue(vnni.describe().contains("repacked"), vnni::describe);
        final Path q4 = data.resolve("q4.gguf");
        SyntheticModel.write(q4, SyntheticModel.Shape.parse("dim=256,layers=4,heads=8,kv=4,ffn=768"), GgmlType.Q4_0,
            null, 3);
        upload(q4, "q4", "stable");
        final String saved = System.getProperty(dev.strata.compute.tensor.Kernels.PROPERTY);
        System.setProperty(dev.strata.compute.tensor.Kernels.PROPERTY, "avx512vnni");
        try
        {
            final int[] expected = local(q4);
            try (RemoteModel model = RemoteModel.open(client, "q4", "stable", "node-1", 60_000);
                StreamingWeightSource w = new StreamingWeightSource(model,
                    StreamingWeightSource.Options.defaults(minimumBudget(model)), new PrefetchStats()))
            {
                assertArrayEquals(expected, generate(w, PROMPT, NEW_TOKENS, t -> true));
            }
        }
        finally
        {
            if (saved == null)
            {
                System.clearProperty(dev.strata.compute.tensor.Kernels.PROPERTY);
            }
            else
            {
                System.setProperty(dev.strata.compute.tensor.Kernels.PROPERTY, saved);
            }
        }
    }
}
