package dev.strata.serve;

import dev.strata.compute.cluster.Msg;
import dev.strata.compute.cluster.NodeAgent;
import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.engine.FinishReason;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.engine.RequestHandle;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The split deployment in one JVM: a router and node agents over a real media driver (IPC), each node with its own
 * engine. Every request's tokens and text must equal an in-process engine's (the colocated run), through KV
 * transfers, damaged chunks, a decode node short of blocks, and a role switch under load.
 */
class ClusterRouterTest
{
    private static final String VERSION = "v1";

    @TempDir
    Path dir;

    private Transport transport;
    private GgufFile file;
    private GgufWeightSource weights;
    private ThreadPool pool;
    private Tokenizer tokenizer;
    private int vocab;
    private final List<AutoCloseable> closeables = new ArrayList<>();

    @BeforeEach
    void start() throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        vocab = SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=64,layers=2,heads=4,kv=2,ffn=96"),
            GgmlType.Q8_0, null, 17);
        file = GgufFile.open(model);
        weights = new GgufWeightSource(file, false);
        pool = new ThreadPool(2);
        tokenizer = Tokenizer.fromGguf(file.metadata());
        transport = Transport.launch(new TransportContext().aeronDirectory(dir.resolve("aeron").toString()));
    }

    @AfterEach
    void stop() throws Exception
    {
        NodeAgent.injectChunkFaults(c -> false);
        NodeAgent.slowPrefillLayers(0);
        NodeAgent.slowKvParts(0);
        for (int i = closeables.size() - 1; i >= 0; i--)
        {
            closeables.get(i).close();
        }
        transport.close();
        pool.close();
        weights.close();
        file.close();
    }

    private Engine engine(final String version, final long kvMemory)
    {
        final Engine e = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
            .modelVersion(version).kvType(KvBlockPool.KvType.F16).kvMemory(kvMemory).blockTokens(16).maxBatchSize(8)
            .maxPrefillTokens(64));
        closeables.add(e);
        return e;
    }

    /** A prefill node's engine: F16 KV in blocks of 16, at most {@code maxPrefillTokens} prompt rows a step. */
    private Engine prefillEngine(final long kvMemory, final int maxPrefillTokens)
    {
        final Engine e = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
            .modelVersion(VERSION).kvType(KvBlockPool.KvType.F16).kvMemory(kvMemory).blockTokens(16).maxBatchSize(8)
            .maxPrefillTokens(maxPrefillTokens));
        closeables.add(e);
        return e;
    }

    private int streams = 0x200;

    private NodeAgent node(final String name, final Msg.Role role, final Engine engine)
    {
        return node(name, role, engine, "aeron:ipc");
    }

    private NodeAgent node(final String name, final Msg.Role role, final Engine engine, final String channel)
    {
        final NodeAgent a = NodeAgent.launch(new NodeAgent.Context().engine(engine).aeron(transport.aeron())
            .node(name).role(role).router("aeron:ipc", NodeAgent.ROUTER_STREAM).listen(channel, streams += 2)
            .heartbeatMillis(50));
        closeables.add(a);
        return a;
    }

    private ClusterRouter router(final int nodes) throws Exception
    {
        return router(nodes, new ClusterRouter.Context());
    }

    private ClusterRouter router(final int nodes, final ClusterRouter.Context context) throws Exception
    {
        final ClusterRouter r = ClusterRouter.launch(context.aeron(transport.aeron())
            .tokenizer(tokenizer).version(VERSION).nodeTimeoutMillis(5_000));
        closeables.add(r);
        r.awaitNodes(nodes, 30_000);
        return r;
    }

    private GenerationRequest request(final Random random, final int length, final SamplerConfig sampling,
        final List<String> stops)
    {
        return new GenerationRequest(random.ints(length, 3, vocab).toArray(), sampling, 24, null, stops, -1, 0f, 0f,
            true);
    }

    /** What the request gives on one engine in this process: the colocated run. */
    private Completion colocated(final GenerationRequest r)
    {
        try (Engine e = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
            .modelVersion("reference").kvMemory(8L << 20)))
        {
            return e.generate(r);
        }
    }

    private static Completion run(final ClusterRouter router, final GenerationRequest r, final StringBuilder streamed)
        throws Exception
    {
        final RequestHandle h = router.submit(r, streamingInto(streamed));
        return h.completion().get(120, TimeUnit.SECONDS);
    }

    /** A listener that appends each token's text to {@code text}. */
    private static dev.strata.compute.engine.GenerationListener streamingInto(final StringBuilder text)
    {
        return new dev.strata.compute.engine.GenerationListener()
        {
            @Override
            public void onToken(final TokenEvent event)
            {
                text.append(event.text());
            }

            @Override
            public void onComplete(final Completion completion)
            {
            }
        };
    }

    private static void assertSame(final Completion expected, final Completion actual, final String streamed,
        final String what)
    {
        assertArrayEquals(expected.tokens(), actual.tokens(), what + ": tokens");
        assertEquals(expected.text(), actual.text(), what + ": text");
        assertEquals(expected.text(), streamed, what + ": streamed text");
        assertEquals(expected.reason(), actual.reason(), what + ": finish reason");
    }

    @Test
    void shouldGiveTheColocatedTokensAndTextThroughAPrefillAndADecodeNode() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        final ClusterRouter router = router(2);
        final Random random = new Random(5);
        int n = 0;
        for (final int length : new int[]{3, 16, 17, 40, 100})
        {
            for (final SamplerConfig sampling : new SamplerConfig[]{SamplerConfig.greedy(),
                SamplerConfig.defaults(77 + length)})
            {
                final GenerationRequest r = request(random, length, sampling, List.of());
                final StringBuilder streamed = new StringBuilder();
                assertSame(colocated(r), run(router, r, streamed), streamed.toString(), "prompt " + length + " " +
                    sampling);
                n++;
            }
        }
        // a stop string, applied by the router to the text it assembles
        final GenerationRequest plain = request(random, 30, SamplerConfig.greedy(), List.of());
        final String text = colocated(plain).text();
        final String stop = text.substring(text.length() / 2, text.length() / 2 + 2);
        final GenerationRequest stopped = new GenerationRequest(plain.prompt(), plain.sampling(), 24, null,
            List.of(stop), -1, 0f, 0f, true);
        final StringBuilder streamed = new StringBuilder();
        final Completion c = run(router, stopped, streamed);
        assertSame(colocated(stopped), c, streamed.toString(), "stop string");
        assertEquals(FinishReason.STOP, c.reason());
        final int total = n + 1;
        awaitTrue(() -> router.view().requests() == total && router.view().active() == 0, "the view counts them");
        final ClusterRouter.RouterView v = router.view();
        assertTrue(v.split() >= 8, "prompts of 16 tokens and more were split: " + v);
        assertTrue(v.kvBytes() > 0);
        awaitTrue(() -> router.view().nodes().stream().allMatch(x -> x.kvFree() == x.kvBlocks() ||
            x.node().equals("d")), "the prefill node freed its blocks");
    }

    /**
     * Nodes of two versions in rotation at once. A request runs on the version current when it arrived, both halves on
     * nodes of it: before the switch version 1's tokens, after it version 2's, and one streaming across the switch
     * finishes with version 1's tokens (a colocated run of version 1, not a mix).
     */
    @Test
    void shouldRunEachRequestOnTheVersionCurrentWhenItArrivedAcrossASwitch() throws Exception
    {
        final Path second = dir.resolve("m2.gguf");
        SyntheticModel.write(second, SyntheticModel.Shape.parse("dim=64,layers=2,heads=4,kv=2,ffn=96"), GgmlType.Q8_0,
            null, 18);
        final GgufFile file2 = GgufFile.open(second);
        closeables.add(file2);
        final GgufWeightSource weights2 = new GgufWeightSource(file2, false);
        closeables.add(weights2);
        final java.util.function.Function<Long, Engine> engine2 = kv ->
        {
            final Engine e = Engine.launch(new Engine.Context().weights(weights2).pool(pool).tokenizer(tokenizer)
                .modelVersion("v2").kvType(KvBlockPool.KvType.F16).kvMemory(kv).blockTokens(16).maxBatchSize(8)
                .maxPrefillTokens(64));
            closeables.add(e);
            return e;
        };
        node("p1", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d1", Msg.Role.DECODE, engine(VERSION, 64L << 20));
        node("p2", Msg.Role.PREFILL, engine2.apply(8L << 20));
        node("d2", Msg.Role.DECODE, engine2.apply(64L << 20));
        final ClusterRouter router = router(4);
        router.awaitNodes(2, "v2", 30_000);

        final GenerationRequest r = request(new Random(21), 40, SamplerConfig.greedy(), List.of());
        final Completion one = colocated(r);
        final Completion two;
        try (Engine e = engine2.apply(8L << 20))
        {
            two = e.generate(r);
        }
        assertFalse(java.util.Arrays.equals(one.tokens(), two.tokens()), "the versions answer differently");
        StringBuilder streamed = new StringBuilder();
        assertSame(one, run(router, r, streamed), streamed.toString(), "before the switch");

        // a long request of version 1, streaming when the switch comes: the switch is asked for from its fifth token's
        // callback (on the router thread), so it runs while the request still has 1,495 tokens to go
        final GenerationRequest longer = new GenerationRequest(request(new Random(22), 30, SamplerConfig.greedy(),
            List.of()).prompt(), SamplerConfig.greedy(), 1500, null, List.of(), -1, 0f, 0f, true);
        final StringBuilder longStreamed = new StringBuilder();
        final dev.strata.compute.engine.GenerationListener text = streamingInto(longStreamed);
        final java.util.concurrent.CompletableFuture<java.util.concurrent.CompletableFuture<ClusterRouter.RouterView>>
            switched = new java.util.concurrent.CompletableFuture<>();
        final int[] tokens = {0};
        final RequestHandle inFlight = router.submit(longer, new dev.strata.compute.engine.GenerationListener()
        {
            @Override
            public void onToken(final TokenEvent event)
            {
                text.onToken(event);
                if (++tokens[0] == 5)
                {
                    switched.complete(router.switchVersion("v2"));
                }
            }

            @Override
            public void onComplete(final Completion completion)
            {
            }
        });
        final ClusterRouter.RouterView atSwitch = switched.get(60, TimeUnit.SECONDS).get(10, TimeUnit.SECONDS);
        assertEquals("v2", atSwitch.version());
        assertEquals(1, atSwitch.activeByVersion().getOrDefault(VERSION, 0), "the long request ran at the switch: " +
            atSwitch);
        streamed = new StringBuilder();
        assertSame(two, run(router, r, streamed), streamed.toString(), "after the switch");
        final Completion longDone = inFlight.completion().get(120, TimeUnit.SECONDS);
        assertSame(colocated(longer), longDone, longStreamed.toString(), "the request that streamed across the switch");
        // routed to nodes of their version the first time (a node of another version would refuse it: a retry)
        assertEquals(0, router.view().retries(), router.view().toString());
        // each version's decode node ran its requests only: two of version 1, one of version 2 (as they report them)
        awaitTrue(() -> decodeRequests(router, "d1") == 2 && decodeRequests(router, "d2") == 1,
            "requests by node: " + router.view().nodes());
        for (final ClusterRouter.NodeView n : router.view().nodes())
        {
            assertEquals(n.node().endsWith("1") ? VERSION : "v2", n.version(), n.toString());
        }
        // a node in rotation is not forgotten
        assertFalse(router.forget("d1").get(10, TimeUnit.SECONDS));
        assertTrue(router.view().nodes().stream().anyMatch(n -> n.node().equals("d1")));
    }

    private static long decodeRequests(final ClusterRouter router, final String node)
    {
        return router.view().nodes().stream().filter(n -> n.node().equals(node)).mapToLong(
            ClusterRouter.NodeView::requests).sum();
    }

    @Test
    void shouldSendEachLayersKvWhileTheRestOfThePrefillComputes() throws Exception
    {
        // prompt chunks of 16 tokens, each layer slowed down: the prefill of 100 tokens takes 7 steps of 2 layers
        final Engine prefill = prefillEngine(8L << 20, 16);
        final NodeAgent p = node("p", Msg.Role.PREFILL, prefill);
        node("d", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        final ClusterRouter router = router(2);
        NodeAgent.slowPrefillLayers(15);
        final GenerationRequest r = request(new Random(9), 100, SamplerConfig.greedy(), List.of());
        final StringBuilder streamed = new StringBuilder();
        assertSame(colocated(r), run(router, r, streamed), streamed.toString(), "streamed prefill");
        awaitTrue(() -> router.view().kvBytes() > 0, "the prefill node reported the transfer");
        final long total = router.view().kvBytes();
        // 99 positions in 7 blocks of 16, per layer: what the first six steps stored went before the last one
        assertTrue(p.kvBytesStreamed() >= total / 2, "sent during the prefill: " + p.kvBytesStreamed() + " of " +
            total);
    }

    @Test
    void shouldStreamAShortPromptsKvWhileALongOneIsStillStreaming() throws Exception
    {
        // a 150-token prompt prefilled 16 tokens a step (8 while it shares the budget), each layer slowed down, and a
        // 20-token prompt behind it: the short one's prefill, transfer and first token come while the long one's KV
        // is still streaming (its transfer lasts as long as its prefill), and both give the colocated text
        final Engine prefill = prefillEngine(8L << 20, 16);
        node("p", Msg.Role.PREFILL, prefill);
        node("d", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        final ClusterRouter router = router(2);
        NodeAgent.slowPrefillLayers(15);
        final Random random = new Random(14);
        final GenerationRequest longer = request(random, 150, SamplerConfig.greedy(), List.of());
        final GenerationRequest shorter = request(random, 20, SamplerConfig.greedy(), List.of());
        final List<String> firstTokens = java.util.Collections.synchronizedList(new ArrayList<>());
        final StringBuilder sl = new StringBuilder();
        final StringBuilder ss = new StringBuilder();
        final RequestHandle hl = router.submit(longer, firstTokenInto(firstTokens, "long", sl));
        final RequestHandle hs = router.submit(shorter, firstTokenInto(firstTokens, "short", ss));
        assertSame(colocated(longer), hl.completion().get(120, TimeUnit.SECONDS), sl.toString(), "long");
        assertSame(colocated(shorter), hs.completion().get(120, TimeUnit.SECONDS), ss.toString(), "short");
        assertEquals(List.of("short", "long"), firstTokens);
        assertEquals(2, router.view().split(), "both went through the prefill node");
    }

    /** Appends each token's text to {@code text}, and {@code name} to {@code order} at the first token. */
    private static dev.strata.compute.engine.GenerationListener firstTokenInto(final List<String> order,
        final String name, final StringBuilder text)
    {
        return new dev.strata.compute.engine.GenerationListener()
        {
            private boolean first = true;

            @Override
            public void onToken(final TokenEvent event)
            {
                if (first)
                {
                    first = false;
                    order.add(name);
                }
                text.append(event.text());
            }

            @Override
            public void onComplete(final Completion completion)
            {
            }
        };
    }

    @Test
    void shouldKeepStreamedKvRightWhenThePrefillIsPreemptedAndRunsAgain() throws Exception
    {
        // a prefill pool of 10 blocks for two prompts of 7 blocks each, prefilled 16 tokens a step side by side:
        // the newer is preempted part way (its blocks go back while its first layers are being sent) and runs again.
        // The transfers lag their prefills (60 ms a part), so the first prompt's KV stays held after its prefill
        // while the second waits for blocks with nothing running: the node must wait for the transfer to give them
        // back (its engine thread used to fail, "KV pool exhausted with nothing running")
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), KvBlockPool.KvType.F16, 16);
        final Engine prefill = prefillEngine(10 * blockBytes, 32);
        node("p", Msg.Role.PREFILL, prefill);
        final Engine decode = engine(VERSION, 8L << 20);
        node("d", Msg.Role.DECODE, decode);
        final ClusterRouter router = router(2);
        NodeAgent.slowPrefillLayers(5);
        NodeAgent.slowKvParts(60);
        final Random random = new Random(12);
        final GenerationRequest a = request(random, 100, SamplerConfig.greedy(), List.of());
        final GenerationRequest b = request(random, 100, SamplerConfig.greedy(), List.of());
        final StringBuilder sa = new StringBuilder();
        final StringBuilder sb = new StringBuilder();
        final RequestHandle ha = router.submit(a, streamingInto(sa));
        final RequestHandle hb = router.submit(b, streamingInto(sb));
        assertSame(colocated(a), ha.completion().get(120, TimeUnit.SECONDS), sa.toString(), "first");
        assertSame(colocated(b), hb.completion().get(120, TimeUnit.SECONDS), sb.toString(), "second, preempted");
        assertTrue(prefill.stats().preemptions() > 0, "a prefill was preempted: " + prefill.stats());
        awaitTrue(() -> prefill.stats().kvBlocksInUse() == 0, "the prefill node freed its blocks");
        // the text is a weak witness (a small random model may decode the same over a few wrong positions): the
        // bytes the decode node holds for each prompt must be the bytes its prefill computed, block by block. A part
        // sent from blocks the preempted prefill had given back (and another prompt then wrote) would differ
        assertSameKv(prefill, decode, b, "second, preempted", true);
        // the second prompt's prefill took some of the first's blocks back from the 10 of the prefill node's cache
        assertSameKv(prefill, decode, a, "first", false);
    }

    /**
     * The full blocks of a request's prefilled tokens (its prompt but the last token), as both engines hold them in
     * their prefix caches, byte for byte.
     */
    private static void assertSameKv(final Engine prefill, final Engine decode, final GenerationRequest r,
        final String what, final boolean allCachedAtPrefill) throws Exception
    {
        final int[] prefix = java.util.Arrays.copyOf(r.prompt(), r.prompt().length - 1);
        final Engine.KvRun p = prefill.reserve(prefix, 0).get(30, TimeUnit.SECONDS);
        final Engine.KvRun d = decode.reserve(prefix, 0).get(30, TimeUnit.SECONDS);
        try
        {
            final int full = prefix.length / 16;
            assertEquals(full, d.cachedBlocks(), what + ": the decode node caches the transferred blocks");
            if (allCachedAtPrefill)
            {
                assertEquals(full, p.cachedBlocks(), what + ": the prefill node still caches them");
            }
            for (int i = 0; i < p.cachedBlocks(); i++)
            {
                assertEquals(-1L, prefill.kvPool().block(p.blocks()[i]).mismatch(decode.kvPool().block(d.blocks()[i])),
                    what + ": block " + i + " of the prompt");
            }
        }
        finally
        {
            prefill.release(p);
            decode.release(d);
        }
    }

    @Test
    void shouldMoveKvOverUdpBetweenNodesThatListenOnUdp() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20), "aeron:udp?endpoint=127.0.0.1:" + freePort());
        node("d", Msg.Role.DECODE, engine(VERSION, 8L << 20), "aeron:udp?endpoint=127.0.0.1:" + freePort());
        final ClusterRouter router = router(2);
        final Random random = new Random(12);
        for (final int length : new int[]{20, 90})
        {
            final GenerationRequest r = request(random, length, SamplerConfig.greedy(), List.of());
            final StringBuilder streamed = new StringBuilder();
            assertSame(colocated(r), run(router, r, streamed), streamed.toString(), "over UDP, prompt " + length);
        }
        awaitTrue(() -> router.view().nodes().stream().anyMatch(x -> x.node().equals("d") &&
            x.kvBytesReceived() > 0), "the decode node received KV over UDP");
    }

    /** A free UDP port whose successor (the node's KV endpoint) is free too. */
    private static int freePort() throws java.io.IOException
    {
        while (true)
        {
            try (java.net.DatagramSocket s = new java.net.DatagramSocket(0);
                java.net.DatagramSocket next = new java.net.DatagramSocket(s.getLocalPort() + 1))
            {
                return s.getLocalPort();
            }
            catch (final java.net.SocketException e)
            {
                // the next port is taken: try another pair
            }
        }
    }

    @Test
    void shouldSendARepeatedPromptToTheDecodeNodeThatHoldsItsPrefixAndTransferOnlyTheRest() throws Exception
    {
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), KvBlockPool.KvType.F16, 16);
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d1", Msg.Role.DECODE, engine(VERSION, 40 * blockBytes));
        final Engine d2 = engine(VERSION, 56 * blockBytes);
        node("d2", Msg.Role.DECODE, d2);
        final ClusterRouter router = router(3);
        final Random random = new Random(13);
        final GenerationRequest a = request(random, 50, SamplerConfig.greedy(), List.of());
        final Completion first = run(router, a, new StringBuilder());
        assertEquals(0, first.cachedTokens());
        // d2 gets busy with 32 blocks (held as a transfer would hold them): fewer free than d1, but half as many
        final Engine.KvRun held = d2.reserve(random.ints(512, 3, vocab).toArray(), 0).get(30, TimeUnit.SECONDS);
        assertEquals(32, held.blocks().length);
        awaitTrue(() -> router.view().nodes().stream().anyMatch(x -> x.node().equals("d2") && x.kvFree() <= 24),
            "d2 reports the blocks in use");
        final StringBuilder streamed = new StringBuilder();
        final Completion again = run(router, a, streamed);
        assertSame(colocated(a), again, streamed.toString(), "the repeated prompt");
        assertEquals(48, again.cachedTokens(), "d2 held the prompt's 3 full blocks: only the rest moved");
        d2.release(held);
    }

    @Test
    void shouldCatchADamagedKvChunkAndSendItAgain() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        final ClusterRouter router = router(2);
        NodeAgent.injectChunkFaults(c -> c == 1);
        final GenerationRequest r = request(new Random(6), 60, SamplerConfig.greedy(), List.of());
        final StringBuilder streamed = new StringBuilder();
        assertSame(colocated(r), run(router, r, streamed), streamed.toString(), "after a re-send");
        awaitTrue(() -> router.view().nodes().stream().anyMatch(x -> x.node().equals("p") && x.kvRetries() == 1),
            "the prefill node counted one re-send");
        assertEquals(0, router.view().failovers());
    }

    @Test
    void shouldPushBackWhenTheDecodeNodeIsShortOfBlocksInsteadOfFailingRequests() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        // 24 blocks: each request needs 6 (70 + 24 positions), so at most 3-4 fit beside the headroom
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), KvBlockPool.KvType.F16, 16);
        node("d", Msg.Role.DECODE, engine(VERSION, 24 * blockBytes));
        final ClusterRouter router = router(2);
        final Random random = new Random(7);
        final List<GenerationRequest> requests = new ArrayList<>();
        final List<RequestHandle> handles = new ArrayList<>();
        final List<StringBuilder> texts = new ArrayList<>();
        for (int i = 0; i < 10; i++)
        {
            final GenerationRequest r = request(random, 70, SamplerConfig.greedy(), List.of());
            final StringBuilder sb = new StringBuilder();
            requests.add(r);
            texts.add(sb);
            handles.add(router.submit(r, streamingInto(sb)));
        }
        for (int i = 0; i < handles.size(); i++)
        {
            final Completion c = handles.get(i).completion().get(180, TimeUnit.SECONDS);
            assertSame(colocated(requests.get(i)), c, texts.get(i).toString(), "request " + i);
        }
        assertEquals(0, router.view().retries(), "no request failed over for lack of room");
    }

    @Test
    void shouldRefuseKvOfAnotherModelVersion() throws Exception
    {
        final Engine e = engine(VERSION, 8L << 20);
        final NodeAgent d = node("d", Msg.Role.DECODE, e);
        final int dStream = streams;
        try (Subscription replies = transport.aeron().addSubscription("aeron:ipc", 0x7777);
            Publication toD = transport.aeron().addPublication("aeron:ipc", dStream))
        {
            final Msg.KvOffer offer = new Msg.KvOffer(1L, "stranger", "aeron:ipc", 0x7777, "v2", new int[]{1, 2, 3},
                Msg.Spec.of(GenerationRequest.of(new int[]{1, 2, 3, 4}, SamplerConfig.greedy(), 4)), "F16", 16,
                e.kvPool().blockBytes());
            final byte[] bytes = Msg.encode(offer);
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (toD.offer(new UnsafeBuffer(bytes)) < 0)
            {
                assertTrue(System.nanoTime() < deadline, "could not reach the decode node");
                Thread.sleep(1);
            }
            final Msg[] answer = new Msg[1];
            final FragmentAssembler handler = new FragmentAssembler((b, o, l, h) ->
            {
                final byte[] m = new byte[l];
                b.getBytes(o, m);
                answer[0] = Msg.decode(m);
            });
            while (answer[0] == null)
            {
                replies.poll(handler, 1);
                assertTrue(System.nanoTime() < deadline, "no answer to the offer");
                Thread.sleep(1);
            }
            final Msg.KvAccept a = (Msg.KvAccept)answer[0];
            assertFalse(a.ok());
            assertFalse(a.retry(), "a version mismatch is final");
            assertTrue(a.reason().contains("model version v2"), a.reason());
            assertEquals(0, e.kvPool().inUse(), "nothing reserved");
            assertEquals("d", d.node());
        }
    }

    @Test
    void shouldDropAndRepeatNothingWhenARoleSwitchesUnderASteadyStream() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d1", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        node("d2", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        final ClusterRouter router = router(3);
        final Random random = new Random(8);
        final List<GenerationRequest> requests = new ArrayList<>();
        final List<RequestHandle> handles = new ArrayList<>();
        final List<StringBuilder> texts = new ArrayList<>();
        for (int i = 0; i < 24; i++)
        {
            if (i == 8)
            {
                router.setRole("d2", Msg.Role.PREFILL).get(10, TimeUnit.SECONDS);
            }
            if (i == 16)
            {
                router.setRole("p", Msg.Role.DECODE).get(10, TimeUnit.SECONDS);
            }
            final GenerationRequest r = request(random, 20 + random.nextInt(60), SamplerConfig.greedy(), List.of());
            final StringBuilder sb = new StringBuilder();
            requests.add(r);
            texts.add(sb);
            handles.add(router.submit(r, streamingInto(sb)));
            Thread.sleep(20);
        }
        for (int i = 0; i < handles.size(); i++)
        {
            final Completion c = handles.get(i).completion().get(180, TimeUnit.SECONDS);
            assertSame(colocated(requests.get(i)), c, texts.get(i).toString(), "request " + i);
        }
        assertEquals(2, router.view().roleSwitches());
        awaitTrue(() -> router.view().nodes().stream().anyMatch(x -> x.node().equals("d2") &&
            x.role().equals("prefill")), "d2 reports its new role");
    }

    @Test
    void shouldGiveThePrefillPoolADecodeNodeWhenPrefillStaysTheBottleneck() throws Exception
    {
        node("p", Msg.Role.PREFILL, engine(VERSION, 8L << 20));
        node("d1", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        node("d2", Msg.Role.DECODE, engine(VERSION, 8L << 20));
        // a prefill target of 1 ms that no prefill meets, a decode target that every token meets
        final ClusterRouter router = router(3, new ClusterRouter.Context().autoRatio(true, 500, 1, 600_000));
        final Random random = new Random(9);
        final List<GenerationRequest> requests = new ArrayList<>();
        final List<RequestHandle> handles = new ArrayList<>();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (router.view().roleSwitches() == 0)
        {
            assertTrue(System.nanoTime() < deadline, "no switch: " + router.view());
            final GenerationRequest r = request(random, 40 + random.nextInt(40), SamplerConfig.greedy(), List.of());
            requests.add(r);
            handles.add(router.submit(r, c -> { }));
            Thread.sleep(50);
        }
        for (int i = 0; i < handles.size(); i++)
        {
            final Completion c = handles.get(i).completion().get(180, TimeUnit.SECONDS);
            assertArrayEquals(colocated(requests.get(i)).tokens(), c.tokens(), "request " + i);
        }
        awaitTrue(() -> router.view().nodes().stream().filter(x -> x.role().equals("prefill")).count() == 2,
            "two prefill nodes reported: " + router.view().nodes());
        assertEquals(1, router.view().roleSwitches(), "the last decode node never switches");
    }

    private static void awaitTrue(final BooleanSupplier condition, final String what) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean())
        {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for: " + what);
            Thread.sleep(10);
        }
    }
}
