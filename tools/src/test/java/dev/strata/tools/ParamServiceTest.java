package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.gguf.GgufWriter;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.BlockClient;
import dev.strata.paramclient.Manifest;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.paramserver.ParamService;
import dev.strata.transport.BlockId;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.Status;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The parameter service end to end, in-process: upload with the CLI, pull blocks over Aeron (IPC and UDP), dedup,
 * export, labels, leases, restart and bad input. Expectations come from the GGUF file itself (tensor bytes).
 */
class ParamServiceTest
{
    private static final String TOKEN = "t0ken";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long TIMEOUT = TimeUnit.SECONDS.toNanos(20);

    @TempDir
    static Path models;

    static Path v1;
    static Path v2;

    @TempDir
    Path data;

    ParamService service;
    String server;

    @BeforeAll
    static void synthesize() throws Exception
    {
        // an F32 model whose FFN matrices (3 MiB) span two blocks each
        v1 = models.resolve("v1.gguf");
        SyntheticModel.write(v1, SyntheticModel.Shape.parse("dim=512,layers=2,heads=8,kv=4,ffn=1536"), GgmlType.F32,
            null, 1);
        v2 = models.resolve("v2.gguf");
        try (GgufFile original = GgufFile.open(v1))
        {
            final List<GgufWriter.Tensor> tensors = new ArrayList<>();
            for (final GgufTensorInfo t : original.tensors().values())
            {
                tensors.add(new GgufWriter.Tensor(t.name(), t.type(), t.shape(), ch ->
                {
                    final byte[] bytes = original.tensorData(t).toArray(ValueLayout.JAVA_BYTE);
                    if (t.name().equals("blk.1.ffn_down.weight"))
                    {
                        bytes[100] ^= 1;
                    }
                    GgufWriter.writeFully(ch, ByteBuffer.wrap(bytes));
                }));
            }
            GgufWriter.write(v2, original.metadata(), tensors);
        }
    }

    @BeforeEach
    void start() throws Exception
    {
        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        server = "localhost:" + service.adminPort();
    }

    @AfterEach
    void stop()
    {
        if (service != null)
        {
            service.close();
        }
    }

    private CliTest.Run cli(final String... args)
    {
        final List<String> all = new ArrayList<>(List.of(args));
        all.add("--server");
        all.add(server);
        if (!all.contains("--token"))
        {
            all.add("--token");
            all.add(TOKEN);
        }
        return CliTest.run(all.toArray(String[]::new));
    }

    private JsonNode upload(final Path file, final String... extra) throws Exception
    {
        final List<String> args = new ArrayList<>(List.of("model", "upload", file.toString(), "--name", "llama", "--json"));
        args.addAll(List.of(extra));
        final CliTest.Run r = cli(args.toArray(String[]::new));
        assertEquals(0, r.code(), r.err());
        return JSON.readTree(r.out());
    }

    @Test
    void shouldUploadThenServeEveryTensorByteIdenticalOverIpcAndUdp() throws Exception
    {
        final JsonNode summary = upload(v1, "--label", "stable");
        assertEquals(1, summary.path("version").asInt());
        assertTrue(summary.path("blocks_total").asInt() > summary.path("blocks_new").asInt(),
            "identical norm tensors are sent once");

        final ParamClient client = new ParamClient(server, TOKEN);
        final ParamClient.PinnedManifest pinned = client.manifest("llama", "stable");
        assertEquals(1, pinned.version());
        final ServiceInfo.Endpoints endpoints = client.endpoints();

        // IPC: a second Aeron client on the service's media driver
        try (Transport ipc = Transport.launch(new TransportContext().embeddedDriver(false)
            .aeronDirectory(endpoints.aeronDir())))
        {
            final BlockClient blocks = BlockClient.connect(ipc.aeron(), endpoints.ipcChannel(),
                endpoints.streamId(), null, TIMEOUT).token(TOKEN); // reads are protected by default
            assertTensorsIdentical(v1, pinned, blocks);
            blocks.close();
        }
        // UDP loopback: this client has its own media driver
        try (Transport udp = Transport.launch(new TransportContext()))
        {
            final BlockClient blocks = BlockClient.connect(udp.aeron(), endpoints.udpChannel(),
                endpoints.streamId(), "localhost", TIMEOUT).token(TOKEN); // reads are protected by default
            assertTensorsIdentical(v1, pinned, blocks);
            blocks.close();
        }
    }

    @Test
    void shouldRequireTheTokenForBlockPullsAndHintsWhenReadsAreProtected() throws Exception
    {
        service.close();
        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        server = "localhost:" + service.adminPort();
        upload(v1, "--label", "stable");
        final ParamClient client = new ParamClient(server, TOKEN);
        final ParamClient.PinnedManifest pinned = client.manifest("llama", "stable");
        final ServiceInfo.Endpoints endpoints = client.endpoints();
        final List<BlockId> first = pinned.manifest().tensors().getFirst().blocks();
        try (Transport ipc = Transport.launch(new TransportContext().embeddedDriver(false)
            .aeronDirectory(endpoints.aeronDir())))
        {
            final BlockClient blocks = BlockClient.connect(ipc.aeron(), endpoints.ipcChannel(),
                endpoints.streamId(), null, TIMEOUT);
            for (final String wrong : new String[]{"", "not-the-token", "t0keN"})
            {
                final BlockClient.FetchException refused = assertThrows(BlockClient.FetchException.class,
                    () -> blocks.token(wrong).fetch("llama@1", first, TIMEOUT));
                assertEquals(Status.UNAUTHORIZED, refused.status());
                assertTrue(refused.getMessage().contains("protects reads"), refused.getMessage());
            }
            // a hint without the token is dropped: nothing is promoted, the rejection is counted. The server reads
            // one client's messages in order, so once the hint with the token that follows it is counted, the
            // first one has been handled: only the second may have added its blocks.
            final long hinted = service.blockServer().hinted();
            final long rejected = service.blockServer().rejected();
            assertTensorsIdentical(v1, pinned, blocks.token(TOKEN));
            assertTrue(blocks.token("").hint("llama@1", first, TIMEOUT));
            assertTrue(blocks.token(TOKEN).hint("llama@1", first, TIMEOUT));
            awaitCondition(() -> service.blockServer().hinted() > hinted, "the hint with the token is taken");
            assertEquals(hinted + first.size(), service.blockServer().hinted(),
                "only the blocks of the hint with the token were taken");
            assertEquals(rejected + 1, service.blockServer().rejected(), "the hint without it was rejected");
            blocks.close();
        }
    }

    private static void assertTensorsIdentical(final Path file, final ParamClient.PinnedManifest pinned,
        final BlockClient blocks) throws Exception
    {
        try (GgufFile gguf = GgufFile.open(file))
        {
            assertEquals(gguf.tensors().size(), pinned.manifest().tensors().size());
            for (final Manifest.Tensor t : pinned.manifest().tensors())
            {
                final List<MemorySegment> parts = blocks.fetch("llama@" + pinned.version(), t.blocks(), TIMEOUT);
                final MemorySegment expected = gguf.tensorData(gguf.tensor(t.name()));
                long offset = 0;
                for (final MemorySegment part : parts)
                {
                    assertEquals(-1, part.mismatch(expected.asSlice(offset, part.byteSize())), t.name());
                    offset += part.byteSize();
                }
                assertEquals(expected.byteSize(), offset, t.name() + " complete");
            }
        }
    }

    @Test
    void shouldUploadOnlyTheChangedTensorOfASecondVersionAndExportBothIdentically() throws Exception
    {
        upload(v1, "--label", "stable");
        final JsonNode second = upload(v2);
        assertEquals(2, second.path("version").asInt());
        final Manifest m2 = new ParamClient(server, TOKEN).manifest("llama", "2").manifest();
        final long changed = m2.tensors().stream().filter(t -> t.name().equals("blk.1.ffn_down.weight"))
            .mapToLong(t -> t.blocks().size()).sum();
        assertEquals(2, changed, "the changed tensor spans two blocks");
        assertEquals(1, second.path("blocks_new").asInt(), "only the changed block of the changed tensor is new");
        assertTrue(second.path("bytes_new").asLong() <= 2L << 20);

        for (final String[] c : new String[][]{{"llama@1", "v1.gguf"}, {"llama@2", "v2.gguf"}})
        {
            final Path out = data.resolve("export-" + c[1]);
            assertEquals(0, cli("model", "export", c[0], "--out", out.toString()).code());
            try (GgufFile original = GgufFile.open(models.resolve(c[1])); GgufFile back = GgufFile.open(out))
            {
                assertEquals(original.metadata().keys(), back.metadata().keys());
                for (final GgufTensorInfo t : original.tensors().values())
                {
                    assertEquals(-1, original.tensorData(t).mismatch(back.tensorData(back.tensor(t.name()))), t.name());
                }
            }
        }
    }

    @Test
    void shouldWalkLabelsAndKeepLeasedVersionFromDeletion() throws Exception
    {
        upload(v1, "--label", "stable");
        upload(v2, "--label", "canary", "--canary-weight", "20");
        final ParamClient client = new ParamClient(server, TOKEN);
        assertEquals(2, client.show("llama", "canary").version());
        assertEquals(20, (int)client.show("llama", "canary").canaryWeight());
        assertEquals(0, cli("model", "promote", "llama@2").code());
        assertEquals(2, client.show("llama", "stable").version());
        assertEquals("retired", client.show("llama", "1").state());
        assertEquals(0, cli("model", "rollback", "llama").code());
        assertEquals(1, client.show("llama", "stable").version());

        client.lease("node-a", "llama", 2, 60_000);
        final CliTest.Run refused = cli("model", "rm", "llama@2");
        assertEquals(5, refused.code(), refused.err());
        assertTrue(refused.err().contains("leased by node-a"), refused.err());
        client.release("node-a", "llama", 2);
        assertEquals(0, cli("model", "rm", "llama@2").code());
        assertEquals(3, cli("model", "show", "llama@2").code(), "a deleted version is gone");
        final CliTest.Run list = cli("model", "list");
        assertTrue(list.out().contains("llama"), list.out());
    }

    @Test
    void shouldCollectTheBlocksOnlyADeletedVersionUsedOnceNoUploadIsInProgress() throws Exception
    {
        upload(v1, "--label", "stable");
        upload(v2);
        final ParamClient client = new ParamClient(server, TOKEN);
        final List<BlockId> first = client.manifest("llama", "1").manifest().allBlocks();
        final List<BlockId> onlySecond = new ArrayList<>(client.manifest("llama", "2").manifest().allBlocks());
        onlySecond.removeAll(first);
        assertEquals(1, onlySecond.size(), "v2 changed one block");
        final BlockId garbage = onlySecond.getFirst();
        assertTrue(service.store().contains(garbage));

        // an upload in progress may count on a stored block it did not send: nothing is collected until it commits
        try (GgufFile other = GgufFile.open(v1))
        {
            final ModelImporter.Plan plan = ModelImporter.plan(other, "other");
            final byte[] manifest = plan.manifest().encode();
            final int version = service.beginUpload("other", BlockId.of(manifest).hex()).getKey().number();
            assertEquals(0, cli("model", "rm", "llama@2").code());
            assertTrue(service.store().contains(garbage), "kept while an upload is in progress");
            assertEquals(0, service.blocksCollected());

            ModelImporter.upload(plan, ModelImporter.storeSink(service.store()), (a, b, c, d) -> { });
            service.commit("other", version, manifest);
        }
        assertFalse(service.store().contains(garbage), "collected once the upload committed");
        assertEquals(1, service.blocksCollected());
        for (final BlockId id : first)
        {
            assertTrue(service.store().contains(id), "a block v1 still uses is kept: " + id);
        }
        final Path out = data.resolve("after-gc.gguf");
        assertEquals(0, cli("model", "export", "llama@1", "--out", out.toString()).code());
        try (GgufFile original = GgufFile.open(v1); GgufFile back = GgufFile.open(out))
        {
            for (final GgufTensorInfo t : original.tensors().values())
            {
                assertEquals(-1, original.tensorData(t).mismatch(back.tensorData(back.tensor(t.name()))), t.name());
            }
        }

        // deleting v1 as well (after a second version takes the label) leaves the blocks "other" shares with it
        upload(v2, "--label", "stable");
        final long before = service.blocksCollected();
        assertEquals(0, cli("model", "rm", "llama@1").code());
        assertEquals(before, service.blocksCollected(), "every v1 block is still used by other@1 or llama@3");
    }

    @Test
    void shouldSweepBlocksNoCommittedVersionUsesButNotDuringAnUpload() throws Exception
    {
        upload(v1, "--label", "stable");
        final List<BlockId> live = new ParamClient(server, TOKEN).manifest("llama", "1").manifest().allBlocks();
        // a block no manifest names (as an abandoned upload leaves)
        final BlockId orphan = service.store().put(MemorySegment.ofArray("left behind".getBytes()));
        assertTrue(service.store().contains(orphan));

        try (GgufFile other = GgufFile.open(v2))
        {
            final byte[] manifest = ModelImporter.plan(other, "other").manifest().encode();
            final int version = service.beginUpload("other", BlockId.of(manifest).hex()).getKey().number();
            final CliTest.Run refused = cli("model", "gc");
            assertEquals(5, refused.code(), refused.err());
            assertTrue(refused.err().contains("an upload is in progress (other@" + version + ")"), refused.err());
            assertTrue(service.store().contains(orphan));
            assertEquals(0, cli("model", "rm", "other@" + version).code(), "an abandoned upload can be deleted");
        }
        final CliTest.Run swept = cli("model", "gc");
        assertEquals(0, swept.code(), swept.err());
        assertTrue(swept.out().startsWith("1 of "), swept.out());
        assertFalse(service.store().contains(orphan));
        for (final BlockId id : live)
        {
            assertTrue(service.store().contains(id), "a block of llama@1 is kept: " + id);
        }
        assertTrue(cli("model", "gc").out().startsWith("0 of "), "nothing left to sweep");
        assertEquals(0, cli("model", "verify", "llama@1").code());
    }

    @Test
    void shouldKeepVersionsLabelsAndBlocksAcrossRestart() throws Exception
    {
        upload(v1, "--label", "stable");
        upload(v2);
        final String before = new ParamClient(server, TOKEN).versions("llama").toString();
        service.close();
        service = null;
        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        server = "localhost:" + service.adminPort();
        final ParamClient client = new ParamClient(server, TOKEN);
        assertEquals(before, client.versions("llama").toString());
        assertEquals(1, client.show("llama", "stable").version());
        final CliTest.Run verify = cli("model", "verify", "llama@2", "--json");
        assertEquals(0, verify.code(), verify.out() + verify.err());
        assertEquals(0, JSON.readTree(verify.out()).path("lost").size());
        // and a re-upload of v1 finds every block already there
        assertEquals(0, upload(v1).path("blocks_new").asInt());

        // after the restart the memory tier is cold: a prefetch hint over Aeron promotes a version's blocks into it
        final Manifest m = client.manifest("llama", "1").manifest();
        final List<BlockId> wanted = m.tensors().getFirst().blocks();
        wanted.forEach(id -> assertFalse(service.store().memory().contains(id), "cold after restart"));
        final ServiceInfo.Endpoints endpoints = client.endpoints();
        try (Transport ipc = Transport.launch(new TransportContext().embeddedDriver(false)
            .aeronDirectory(endpoints.aeronDir())))
        {
            final BlockClient blocks = BlockClient.connect(ipc.aeron(), endpoints.ipcChannel(),
                endpoints.streamId(), null, TIMEOUT).token(TOKEN); // reads are protected by default
            assertTrue(blocks.hint("llama@1", wanted, TIMEOUT));
            awaitCondition(() -> wanted.stream().allMatch(id -> service.store().memory().contains(id)),
                "hinted blocks were promoted to memory");
            blocks.close();
        }
    }

    @Test
    void shouldRepairACorruptObjectCopyOnVerify() throws Exception
    {
        upload(v1, "--label", "stable");
        final Manifest m = new ParamClient(server, TOKEN).manifest("llama", "1").manifest();
        final BlockId victim = m.tensors().getLast().blocks().getFirst();
        new ParamClient(server, TOKEN).getBlock(victim); // a read promotes the block: the SSD tier gets a copy
        service.close();
        service = null;
        final Path file;
        try (dev.strata.tiering.DirectoryObjectTier objects =
            new dev.strata.tiering.DirectoryObjectTier(data.resolve("objects")))
        {
            file = objects.pathOf(victim);
        }
        final byte[] good = Files.readAllBytes(file);
        final byte[] bad = good.clone();
        bad[bad.length / 2] ^= 0x55;
        Files.write(file, bad);
        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        server = "localhost:" + service.adminPort();
        final CliTest.Run verify = cli("model", "verify", "llama@1", "--json");
        assertEquals(0, verify.code(), verify.out() + verify.err());
        assertTrue(JSON.readTree(verify.out()).path("repaired").asLong() >= 1, verify.out());
        assertTrue(java.util.Arrays.equals(good, Files.readAllBytes(file)), "the object copy was rewritten");
    }

    @Test
    void shouldRejectBadInputClearlyAndKeepServing() throws Exception
    {
        // a truncated GGUF: a clear error, and no version appears
        final Path truncated = data.resolve("truncated.gguf");
        final byte[] whole = Files.readAllBytes(v1);
        Files.write(truncated, java.util.Arrays.copyOf(whole, whole.length / 3));
        final CliTest.Run bad = cli("model", "upload", truncated.toString(), "--name", "llama");
        assertEquals(1, bad.code());
        assertTrue(bad.err().startsWith("error: ") && bad.err().contains("truncated"), bad.err());
        assertEquals(3, cli("model", "versions", "llama").code(), "nothing was created");

        // wrong or missing token
        assertEquals(4, cli("model", "upload", v1.toString(), "--name", "llama", "--token", "nope").code());
        final ParamClient anonymous = new ParamClient(server, null);
        assertEquals(401, assertThrows(ParamClient.ServiceException.class,
            () -> anonymous.beginUpload("llama", "a".repeat(64))).status());

        // bad names, unknown versions, bad references
        final ParamClient client = new ParamClient(server, TOKEN);
        assertEquals(400, assertThrows(ParamClient.ServiceException.class,
            () -> client.beginUpload("../etc", "a".repeat(64))).status());
        assertEquals(400, assertThrows(ParamClient.ServiceException.class,
            () -> client.beginUpload("x".repeat(65), "a".repeat(64))).status());
        assertEquals(400, assertThrows(ParamClient.ServiceException.class,
            () -> client.beginUpload("llama", "not-a-digest")).status());
        assertEquals(3, cli("model", "show", "llama@7").code());

        // a block whose bytes do not match its id, and one over the size limit
        final byte[] some = {1, 2, 3};
        assertEquals(400, assertThrows(ParamClient.ServiceException.class,
            () -> client.putBlock(BlockId.of(new byte[]{4, 5, 6}), some)).status());
        assertEquals(413, assertThrows(ParamClient.ServiceException.class,
            () -> client.putBlock(new BlockId(new byte[32], ParamService.MAX_BLOCK_BYTES + 1), some)).status());

        // commit with blocks missing is refused, commit of a manifest for another digest too
        final Manifest fake = new Manifest("llama", BlockId.of(new byte[]{42}), List.of());
        final byte[] encoded = fake.encode();
        final int version = client.beginUpload("llama", BlockId.of(encoded).hex()).version();
        final ParamClient.ServiceException missing = assertThrows(ParamClient.ServiceException.class,
            () -> client.commit("llama", version, encoded));
        assertEquals(409, missing.status());
        assertTrue(missing.getMessage().contains("not uploaded"), missing.getMessage());
        assertEquals(400, assertThrows(ParamClient.ServiceException.class,
            () -> client.commit("llama", version, new byte[]{1, 2, 3})).status());

        // the service still works
        assertTrue(upload(v1).path("blocks_new").asInt() > 0);
        assertEquals("ok", client.health().status());
    }

    @Test
    void shouldGiveReadersTheOldOrTheNewVersionNeverAMixDuringPromotions() throws Exception
    {
        upload(v1, "--label", "stable");
        upload(v2);
        final ParamClient client = new ParamClient(server, TOKEN);
        final ServiceInfo.Endpoints endpoints = client.endpoints();
        final byte[][] expected = new byte[3][];
        try (GgufFile a = GgufFile.open(v1); GgufFile b = GgufFile.open(v2))
        {
            expected[1] = a.tensorData(a.tensor("blk.1.ffn_down.weight")).toArray(ValueLayout.JAVA_BYTE);
            expected[2] = b.tensorData(b.tensor("blk.1.ffn_down.weight")).toArray(ValueLayout.JAVA_BYTE);
        }
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
        final java.util.concurrent.atomic.AtomicIntegerArray seen = new java.util.concurrent.atomic.AtomicIntegerArray(3);
        final Thread reader = Thread.ofPlatform().start(() ->
        {
            try (Transport ipc = Transport.launch(new TransportContext().embeddedDriver(false)
                .aeronDirectory(endpoints.aeronDir())))
            {
                final BlockClient blocks = BlockClient.connect(ipc.aeron(), endpoints.ipcChannel(),
                    endpoints.streamId(), null, TIMEOUT).token(TOKEN); // reads are protected by default
                while (!done.get())
                {
                    // pin whatever is stable now, then read the tensor of that version only
                    final ParamClient.PinnedManifest pinned = client.manifest("llama", "stable");
                    final Manifest.Tensor t = pinned.manifest().tensors().stream()
                        .filter(x -> x.name().equals("blk.1.ffn_down.weight")).findFirst().orElseThrow();
                    final List<MemorySegment> parts = blocks.fetch("llama@" + pinned.version(), t.blocks(), TIMEOUT);
                    final java.io.ByteArrayOutputStream whole = new java.io.ByteArrayOutputStream();
                    for (final MemorySegment p : parts)
                    {
                        whole.write(p.toArray(ValueLayout.JAVA_BYTE));
                    }
                    assertTrue(java.util.Arrays.equals(expected[pinned.version()], whole.toByteArray()),
                        "reader pinned to v" + pinned.version() + " got that version's tensor");
                    seen.incrementAndGet(pinned.version());
                }
                blocks.close();
            }
            catch (final Throwable t)
            {
                failure.set(t);
            }
        });
        // flip stable between the versions, each time until the reader has read whole under the new one
        for (int i = 0; i < 10 && failure.get() == null; i++)
        {
            client.promote("llama", 2);
            final int twos = seen.get(2);
            awaitCondition(() -> seen.get(2) > twos || failure.get() != null, "the reader read v2");
            client.rollback("llama");
            final int ones = seen.get(1);
            awaitCondition(() -> seen.get(1) > ones || failure.get() != null, "the reader read v1");
        }
        done.set(true);
        reader.join();
        assertNull(failure.get(), () -> String.valueOf(failure.get()));
        assertTrue(seen.get(1) >= 10 && seen.get(2) >= 10, "both versions were read, whole, ten times each: " + seen);
    }

    @Test
    void shouldExposeHealthAndPrometheusMetrics() throws Exception
    {
        upload(v1, "--label", "stable");
        final java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
        final String metrics = http.send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create("http://" + server + "/metrics")).build(),
            java.net.http.HttpResponse.BodyHandlers.ofString()).body();
        assertTrue(metrics.contains("strata_models"), metrics);
        assertTrue(metrics.contains("# TYPE"), "Prometheus text format");
        final ServiceInfo.Health health = new ParamClient(server, null).health();
        assertEquals("ok", health.status());
        assertEquals(1, health.models());
    }

    /** Waits for {@code condition}, polling it, for at most the test's time-out; fails naming what did not happen. */
    static void awaitCondition(final java.util.function.BooleanSupplier condition, final String what)
    {
        final long deadline = System.nanoTime() + TIMEOUT;
        while (!condition.getAsBoolean())
        {
            assertTrue(System.nanoTime() < deadline, "timed out waiting: " + what);
            java.util.concurrent.locks.LockSupport.parkNanos(1_000_000L);
        }
    }
}
