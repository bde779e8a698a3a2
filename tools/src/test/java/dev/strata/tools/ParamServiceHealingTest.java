package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.paramserver.ParamService;
import dev.strata.transport.BlockId;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15, in-process: a block whose only copy is bad is quarantined and healed by uploading its file again (or by
 * a PUT of its bytes); concurrent uploads of one file all succeed with one version; a label that a concurrent upload
 * undid is reported; a model's first version is its active one, so its bare name resolves.
 */
class ParamServiceHealingTest
{
    private static final String TOKEN = "heal-token";
    private static final ObjectMapper JSON = new ObjectMapper();

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
        v1 = models.resolve("v1.gguf");
        SyntheticModel.write(v1, SyntheticModel.Shape.parse("dim=256,layers=2,heads=8,kv=4,ffn=768"), GgmlType.F32,
            null, 1);
        v2 = models.resolve("v2.gguf");
        SyntheticModel.write(v2, SyntheticModel.Shape.parse("dim=256,layers=2,heads=8,kv=4,ffn=768"), GgmlType.F32,
            null, 2);
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
        service.close();
    }

    private CliTest.Run cli(final String... args)
    {
        final List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("--server", server, "--token", TOKEN));
        return CliTest.run(all.toArray(String[]::new));
    }

    private JsonNode upload(final Path file, final String... extra) throws Exception
    {
        final List<String> args = new ArrayList<>(List.of("model", "upload", file.toString(), "--name", "llama",
            "--json"));
        args.addAll(List.of(extra));
        final CliTest.Run r = cli(args.toArray(String[]::new));
        assertEquals(0, r.code(), r.out() + r.err());
        return JSON.readTree(r.out());
    }

    /** Flips a byte in the middle of the object tier's file of a block; returns that block's id. */
    private BlockId corruptOneObject(final int which) throws IOException
    {
        final List<Path> files;
        try (Stream<Path> s = Files.walk(data.resolve("objects")))
        {
            files = s.filter(Files::isRegularFile).filter(p -> p.getFileName().toString().matches("[0-9a-f]{64}-\\d+"))
                .sorted().toList();
        }
        final Path f = files.get(which);
        final byte[] bytes = Files.readAllBytes(f);
        bytes[bytes.length / 2] ^= 0x40;
        Files.write(f, bytes);
        return BlockId.parse(f.getFileName().toString());
    }

    private void assertExportsIdentical(final String ref) throws IOException
    {
        final Path out = data.resolveSibling(data.getFileName() + "-export.gguf");
        final CliTest.Run r = cli("model", "export", ref, "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        try (GgufFile a = GgufFile.open(v1); GgufFile b = GgufFile.open(out))
        {
            for (final GgufTensorInfo t : a.tensors().values())
            {
                assertEquals(-1, a.tensorData(t).mismatch(b.tensorData(b.tensor(t.name()))), t.name());
            }
        }
    }

    @Test
    void shouldQuarantineABlockWithNoGoodCopyAndHealItByUploadingTheFileAgain() throws Exception
    {
        upload(v1);
        final ParamClient client = new ParamClient(server, TOKEN);
        final BlockId bad = corruptOneObject(0);
        service.store().memory().delete(bad); // the memory tier could still repair it: only the bad copy is left

        final CliTest.Run verify = cli("model", "verify", "llama@1");
        assertEquals(5, verify.code(), verify.out());
        assertTrue(verify.out().contains("lost: " + bad), verify.out());
        assertTrue(verify.err().contains("upload the file it was made from again"), verify.err());
        assertEquals(List.of(bad), client.missing(List.of(bad)), "a quarantined block no longer counts as present");

        final JsonNode healed = upload(v1);
        assertEquals(1, healed.path("version").asInt(), "the upload heals version 1, it does not add a version");
        assertTrue(healed.path("already_committed").asBoolean(), healed.toString());
        assertEquals(1, healed.path("blocks_new").asInt(), "only the quarantined block is sent");
        assertEquals(1, client.versions("llama").size());
        assertEquals(0, cli("model", "verify", "llama@1").code());
        assertExportsIdentical("llama@1");
    }

    @Test
    void shouldReplaceABadCopyWithAPutOfBytesThatHashToTheId() throws Exception
    {
        upload(v1);
        final ParamClient client = new ParamClient(server, TOKEN);
        final BlockId bad = corruptOneObject(1);
        service.store().memory().delete(bad);
        final byte[] good = goodBytes(bad);

        client.putBlock(bad, good); // 201 (new) or an exception: the client fails on anything else
        assertEquals(0, cli("model", "verify", "llama@1").code(), "the PUT replaced the bad copy");
        assertExportsIdentical("llama@1");
    }

    /** The bytes of a block, cut from the model file the way the importer cuts it. */
    private static byte[] goodBytes(final BlockId id) throws IOException
    {
        try (GgufFile gguf = GgufFile.open(v1))
        {
            final ModelImporter.Plan plan = ModelImporter.plan(gguf, "llama");
            final byte[][] found = new byte[1][];
            ModelImporter.upload(plan, new ModelImporter.BlockSink()
            {
                @Override
                public List<BlockId> missing(final List<BlockId> ids)
                {
                    return ids.contains(id) ? List.of(id) : List.of();
                }

                @Override
                public void put(final BlockId b, final java.lang.foreign.MemorySegment bytes)
                {
                    found[0] = bytes.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                }
            }, (a, b, c, d) -> { }, 1);
            return found[0];
        }
    }

    @Test
    void shouldLetEveryConcurrentUploadOfOneFileSucceedWithOneVersion() throws Exception
    {
        final int clients = 4;
        final ExecutorService pool = Executors.newFixedThreadPool(clients);
        try
        {
            final CountDownLatch go = new CountDownLatch(1);
            final List<Future<CliTest.Run>> runs = new ArrayList<>();
            for (int i = 0; i < clients; i++)
            {
                runs.add(pool.submit(() ->
                {
                    go.await();
                    return cli("model", "upload", v1.toString(), "--name", "llama", "--json");
                }));
            }
            go.countDown();
            for (final Future<CliTest.Run> f : runs)
            {
                final CliTest.Run r = f.get(120, TimeUnit.SECONDS);
                assertEquals(0, r.code(), r.out() + r.err());
                assertEquals(1, JSON.readTree(r.out()).path("version").asInt(), r.out());
            }
        }
        finally
        {
            pool.shutdownNow();
        }
        final List<ServiceInfo.Version> versions = new ParamClient(server, TOKEN).versions("llama");
        assertEquals(1, versions.size(), versions.toString());
        assertEquals("active", versions.getFirst().state());
    }

    @Test
    void shouldReportALabelThatAConcurrentUploadUndid() throws Exception
    {
        // blocks stored already (under another name): the two uploads race through commit and promote
        assertEquals(0, cli("model", "upload", v2.toString(), "--name", "other").code());
        assertEquals(0, cli("model", "upload", v1.toString(), "--name", "other2").code());
        final ExecutorService pool = Executors.newFixedThreadPool(2);
        final List<JsonNode> answers = new ArrayList<>();
        try
        {
            final CountDownLatch go = new CountDownLatch(1);
            final List<Future<CliTest.Run>> runs = new ArrayList<>();
            for (final Path file : List.of(v1, v2))
            {
                runs.add(pool.submit(() ->
                {
                    go.await();
                    return cli("model", "upload", file.toString(), "--name", "llama", "--label", "stable", "--json");
                }));
            }
            go.countDown();
            for (final Future<CliTest.Run> f : runs)
            {
                final CliTest.Run r = f.get(120, TimeUnit.SECONDS);
                assertEquals(0, r.code(), r.out() + r.err());
                answers.add(JSON.readTree(r.out()));
            }
        }
        finally
        {
            pool.shutdownNow();
        }
        final int stable = new ParamClient(server, TOKEN).show("llama", "stable").version();
        int retired = 0;
        for (final JsonNode a : answers)
        {
            final boolean won = a.path("version").asInt() == stable;
            // each reports the state it saw after its promote: the winner is active; the other is retired if the
            // winner's promote came before its report (else it was active then, and the winner's report is later)
            if (won)
            {
                assertEquals("active", a.path("state").asText(), a.toString());
            }
            else if (a.path("state").asText().equals("retired"))
            {
                retired++;
                assertTrue(a.path("note").asText().contains("resolves to llama@" + stable), a.toString());
            }
            else
            {
                assertEquals("active", a.path("state").asText(), a.toString());
            }
        }
        assertTrue(retired <= 1);
    }

    @Test
    void shouldMakeAModelsFirstVersionActiveSoItsBareNameResolves() throws Exception
    {
        final CliTest.Run first = cli("model", "upload", v1.toString(), "--name", "s");
        assertEquals(0, first.code(), first.err());
        assertTrue(first.out().contains("'s' resolves to it"), first.out());
        final ParamClient client = new ParamClient(server, TOKEN);
        assertEquals(1, client.show("s", "stable").version());
        assertEquals(1, client.models().getFirst().stable());
        assertEquals(1, ModelCommand.Ref.parse("s").number(client), "the bare name resolves to the active version");

        final CliTest.Run second = cli("model", "upload", v2.toString(), "--name", "s", "--json");
        assertEquals(0, second.code(), second.err());
        assertEquals("committed", JSON.readTree(second.out()).path("state").asText(), "a later version waits for " +
            "promote");
        assertEquals(1, client.show("s", "stable").version());
        assertFalse(client.versions("s").isEmpty());
    }

    @Test
    void shouldStartAndRemoveAVersionWhoseManifestIsDamaged() throws Exception
    {
        upload(v1);
        upload(v2);
        final String digest = new ParamClient(server, TOKEN).show("llama", "2").manifest();
        service.close();
        final Path manifest = data.resolve("manifests").resolve(digest);
        final byte[] bytes = Files.readAllBytes(manifest);
        bytes[bytes.length / 2] ^= 1;
        Files.write(manifest, bytes);

        service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN));
        server = "localhost:" + service.adminPort();
        final CliTest.Run rm = cli("model", "rm", "llama@2");
        assertEquals(0, rm.code(), rm.out() + rm.err());
        assertEquals("deleted", new ParamClient(server, TOKEN).versions("llama").get(1).state());
        assertEquals(0, cli("model", "gc").code());
        assertEquals(0, cli("model", "verify", "llama@1").code());
        assertExportsIdentical("llama@1");
    }

    @Test
    void shouldRefuseABadCanaryWeightBeforeUploadingAnything() throws Exception
    {
        final CliTest.Run r = cli("model", "upload", v1.toString(), "--name", "llama", "--label", "canary",
            "--canary-weight", "500");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--canary-weight is 1..99"), r.err());
        assertTrue(new ParamClient(server, TOKEN).models().isEmpty(), "nothing was uploaded");
    }
}
