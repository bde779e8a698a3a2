package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.URI;
import java.util.Set;

import static dev.strata.tiering.S3TestServer.BUCKET;
import static dev.strata.tiering.S3TestServer.CREDENTIAL;
import static dev.strata.tiering.S3TestServer.IDENTITY;
import static dev.strata.tiering.S3TestServer.REGION;
import static dev.strata.tiering.TierContractTest.block;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * S3-specific behaviour of {@link S3ObjectTier} against a real S3-compatible server (S3Proxy, in process): the
 * multipart path, ranged reads, failures (unreachable endpoint, wrong credentials, missing bucket) and argument
 * validation. The {@link Tier} contract itself runs in {@link TierContractTest}.
 */
class S3ObjectTierTest
{
    private static final long MIB = 1L << 20;

    private static S3TestServer server;

    @BeforeAll
    static void startServer() throws Exception
    {
        server = S3TestServer.start();
    }

    @AfterAll
    static void stopServer()
    {
        if (server != null)
        {
            server.close();
        }
    }

    @Test
    void shouldRoundTripMultipartBlockByteIdentical() throws IOException
    {
        final String prefix = S3TestServer.uniquePrefix("multipart");
        final MemorySegment content = block(11, 12 * MIB + 5);
        final BlockId id = BlockId.of(content);
        try (S3ObjectTier tier = server.open(prefix, 5 * MIB))
        {
            assertTrue(tier.put(id, content));
            final MemorySegment read = tier.get(id);
            assertNotNull(read);
            assertEquals(12 * MIB + 5, read.byteSize());
            assertEquals(-1, read.mismatch(content), "multipart object byte-identical");
            assertEquals(12 * MIB + 5, tier.usedBytes());
            assertTrue(tier.put(id, content), "second put is a no-op");
            assertEquals(12 * MIB + 5, tier.usedBytes());
            // a range across the first part boundary
            final MemorySegment boundary = tier.getRange(id, 5 * MIB - 3, 8);
            assertEquals(-1, boundary.mismatch(content.asSlice(5 * MIB - 3, 8)));
        }
        try (S3Client client = server.client())
        {
            final String eTag = client.headObject(b -> b.bucket(BUCKET).key(prefix + id)).eTag();
            assertTrue(eTag.replace("\"", "").endsWith("-3"), "3 parts of 5, 5 and 2 MiB + 5 (ETag " + eTag + ")");
            assertTrue(client.listMultipartUploads(b -> b.bucket(BUCKET).prefix(prefix)).uploads().isEmpty(),
                "no upload left open");
        }
        try (S3ObjectTier reopened = server.open(prefix))
        {
            assertEquals(12 * MIB + 5, reopened.usedBytes(), "counted from the listing");
            assertTrue(id.matches(reopened.get(id)), "readable by a tier with the default threshold");
        }
    }

    @Test
    void shouldReturnExactlyTheRequestedRange() throws IOException
    {
        final MemorySegment content = block(12, MIB + 17);
        final BlockId id = BlockId.of(content);
        final long size = content.byteSize();
        try (S3ObjectTier tier = server.open(S3TestServer.uniquePrefix("range")))
        {
            assertNull(tier.getRange(id, 0, 10), "a missing block reads as null");
            tier.put(id, content);
            final long[][] ranges = { { 0, 100 }, { 500_000, 1234 }, { size - 10, 10 }, { 0, size }, { size - 1, 1 } };
            for (final long[] r : ranges)
            {
                final MemorySegment read = tier.getRange(id, r[0], r[1]);
                assertEquals(r[1], read.byteSize(), "length of range " + r[0] + "+" + r[1]);
                assertEquals(-1, read.mismatch(content.asSlice(r[0], r[1])), "bytes of range " + r[0] + "+" + r[1]);
            }
            final long[][] invalid = { { -1, 10 }, { 0, 0 }, { 0, -5 }, { size - 10, 11 }, { size, 1 },
                { Long.MAX_VALUE, 2 } };
            for (final long[] r : invalid)
            {
                final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
                    () -> tier.getRange(id, r[0], r[1]), "range " + r[0] + "+" + r[1]);
                assertTrue(ex.getMessage().contains("invalid range"), ex.getMessage());
            }
        }
    }

    @Test
    void shouldFailFastWithClearMessageWhenEndpointIsUnreachable()
    {
        final IOException ex = assertThrows(IOException.class,
            () -> new S3ObjectTier(URI.create("http://127.0.0.1:1"), REGION, BUCKET, IDENTITY, CREDENTIAL, "x/"));
        assertTrue(ex.getMessage().contains("ListObjectsV2"), ex.getMessage());
        assertTrue(ex.getMessage().contains("s3://" + BUCKET + "/x/ at http://127.0.0.1:1"), ex.getMessage());
        assertTrue(ex.getMessage().contains("endpoint unreachable"), ex.getMessage());
    }

    @Test
    void shouldFailWithIOExceptionOnceTheServerIsGone() throws Exception
    {
        final MemorySegment content = block(13, 4096);
        final BlockId id = BlockId.of(content);
        final S3TestServer doomed = S3TestServer.start();
        try (S3ObjectTier tier = doomed.open("gone/"))
        {
            tier.put(id, content);
            doomed.close();
            final IOException get = assertThrows(IOException.class, () -> tier.get(id));
            assertTrue(get.getMessage().contains("GetObject of s3://" + BUCKET + "/gone/" + id), get.getMessage());
            assertTrue(get.getMessage().contains("endpoint unreachable"), get.getMessage());
            final IOException put = assertThrows(IOException.class, () -> tier.put(id, content));
            assertTrue(put.getMessage().contains("HeadObject"), put.getMessage());
            assertEquals(4096, tier.usedBytes(), "a failed call changes no accounting");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = { "wrong-secret", "wrong-access-key" })
    void shouldNameTheFailureForWrongCredentials(final String which)
    {
        final String access = which.equals("wrong-access-key") ? "no-such-access-key" : IDENTITY;
        final String secret = which.equals("wrong-secret") ? "not-the-secret" : CREDENTIAL;
        final IOException ex = assertThrows(IOException.class,
            () -> new S3ObjectTier(server.endpoint(), REGION, BUCKET, access, secret, "creds/"));
        assertTrue(ex.getMessage().contains("HTTP 403"), ex.getMessage());
        assertTrue(ex.getMessage().contains("access denied"), ex.getMessage());
        assertFalse(ex.getMessage().contains(secret), "the secret is never printed");
    }

    @Test
    void shouldNameAMissingBucket()
    {
        final IOException ex = assertThrows(IOException.class,
            () -> new S3ObjectTier(server.endpoint(), REGION, "no-such-bucket", IDENTITY, CREDENTIAL, null));
        assertTrue(ex.getMessage().contains("NoSuchBucket"), ex.getMessage());
        assertTrue(ex.getMessage().contains("the bucket does not exist"), ex.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = { "", "ab", "My-Bucket", "bucket_name", "-bucket", "bucket-", "a..b", "a.-b", "192.168.1.1",
        "xn--bucket", "bucket-s3alias", "a-bucket-name-that-is-longer-than-sixty-three-characters-in-total" })
    void shouldRejectInvalidBucketName(final String bucket)
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(server.endpoint(), REGION, bucket, IDENTITY, CREDENTIAL, null));
        assertTrue(ex.getMessage().startsWith("invalid S3 bucket name '" + bucket + "'"), ex.getMessage());
    }

    @Test
    void shouldRejectInvalidPrefixThresholdAndEndpoint()
    {
        final URI endpoint = server.endpoint();
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, CREDENTIAL, "/blocks/"))
            .getMessage().contains("must not start with '/'"));
        assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, CREDENTIAL, "a/../b/"));
        assertTrue(assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, CREDENTIAL, "p/", 4 * MIB))
            .getMessage().contains("invalid multipart threshold"));
        assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(URI.create("ftp://127.0.0.1/"), REGION, BUCKET, IDENTITY, CREDENTIAL, null));
        assertThrows(IllegalArgumentException.class,
            () -> new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, " ", null));
    }

    @Test
    void shouldIgnoreForeignKeysUnderThePrefix() throws IOException
    {
        final String prefix = S3TestServer.uniquePrefix("foreign");
        final MemorySegment content = block(14, 3000);
        final BlockId id = BlockId.of(content);
        try (S3Client client = server.client())
        {
            for (final String foreign : new String[] { "README.txt", "shard/" + id, id.hex().toUpperCase() + "-3000",
                id.hex() + "-03000" })
            {
                client.putObject(b -> b.bucket(BUCKET).key(prefix + foreign), RequestBody.fromString("not a block"));
            }
            client.putObject(b -> b.bucket(BUCKET).key(id.toString()), RequestBody.fromString("outside the prefix"));
        }
        try (S3ObjectTier tier = server.open(prefix))
        {
            assertEquals(Set.of(), tier.ids());
            assertEquals(0, tier.usedBytes(), "foreign objects are not counted");
            tier.put(id, content);
            assertEquals(Set.of(id), tier.ids());
            assertEquals(prefix + id, tier.keyOf(id));
        }
        try (S3ObjectTier tier = server.open(prefix))
        {
            assertEquals(3000, tier.usedBytes());
        }
    }
}
