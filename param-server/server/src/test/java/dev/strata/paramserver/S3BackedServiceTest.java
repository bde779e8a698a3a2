package dev.strata.paramserver;

import dev.strata.paramclient.Manifest;

import dev.strata.paramclient.ParamClient;

import dev.strata.transport.BlockId;
import dev.strata.tiering.S3ObjectTier;
import dev.strata.tiering.S3TestServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The service with its object tier in a real S3-compatible server (S3Proxy): uploaded blocks are durable in the
 * bucket before commit, and with the SSD tier wiped they are read back from S3 alone.
 */
class S3BackedServiceTest
{
    @TempDir
    Path data;

    @Test
    void shouldKeepBlocksInS3AndServeThemWithTheSsdTierGone() throws Exception
    {
        try (S3TestServer s3 = S3TestServer.start())
        {
            final ParamService.S3 store = new ParamService.S3(s3.endpoint(), S3TestServer.REGION, S3TestServer.BUCKET,
                "service/", S3TestServer.IDENTITY, S3TestServer.CREDENTIAL);
            final Random random = new Random(11);
            final List<BlockId> ids = new ArrayList<>();
            final List<byte[]> contents = new ArrayList<>();
            final Manifest manifest;
            try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token("t")
                .s3(store)))
            {
                final ParamClient client = new ParamClient("localhost:" + service.adminPort(), "t");
                for (final int size : new int[]{1, 70_000, 3 << 20})
                {
                    final byte[] b = new byte[size];
                    random.nextBytes(b);
                    contents.add(b);
                    ids.add(BlockId.of(b));
                }
                manifest = new Manifest("s3model", ids.getFirst(),
                    List.of(new Manifest.Tensor("w", "F32", new long[]{ids.get(1).length() + ids.get(2).length()},
                        ids.subList(1, 3))));
                final byte[] encoded = manifest.encode();
                final int version = client.beginUpload("s3model", BlockId.of(encoded).hex()).version();
                assertEquals(ids, client.missing(ids));
                for (int i = 0; i < ids.size(); i++)
                {
                    client.putBlock(ids.get(i), contents.get(i));
                }
                assertEquals(List.of(), client.missing(ids));
                client.commit("s3model", version, encoded);
                client.promote("s3model", version);
            }
            // the blocks are in the bucket
            try (S3ObjectTier bucket = new S3ObjectTier(s3.endpoint(), S3TestServer.REGION, S3TestServer.BUCKET,
                S3TestServer.IDENTITY, S3TestServer.CREDENTIAL, "service/"))
            {
                for (final BlockId id : ids)
                {
                    assertTrue(bucket.contains(id), id + " in S3");
                }
            }
            // no SSD copies left: reads must come from S3
            try (Stream<Path> files = Files.walk(data.resolve("ssd")))
            {
                files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
            try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token("t")
                .s3(store)))
            {
                final ParamClient client = new ParamClient("localhost:" + service.adminPort(), "t");
                assertEquals(manifest, client.manifest("s3model", "stable").manifest());
                for (int i = 0; i < ids.size(); i++)
                {
                    assertArrayEquals(contents.get(i), client.getBlock(ids.get(i)));
                }
                assertEquals(0, client.verify("s3model", "stable").lost().size());
                assertTrue(service.store().stats().hits()[2] >= ids.size(), "served from the object tier");
            }
        }
    }
}
