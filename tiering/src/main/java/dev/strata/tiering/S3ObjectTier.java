package dev.strata.tiering;

import dev.strata.transport.BlockId;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.awscore.exception.AwsErrorDetails;
import software.amazon.awssdk.core.ResponseInputStream;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.AbortedException;
import software.amazon.awssdk.core.exception.ApiCallAttemptTimeoutException;
import software.amazon.awssdk.core.exception.ApiCallTimeoutException;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.GetObjectResponse;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.ListObjectsV2Request;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.s3.model.S3Object;
import software.amazon.awssdk.services.s3.model.UploadPartResponse;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.URI;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

/**
 * The object tier on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, S3Proxy, ...): one object per block
 * under {@code <prefix><sha256 hex>-<length>} in one bucket, addressed path-style ({@code endpoint/bucket/key}).
 * <p>
 * <b>Writes.</b> A put first checks (HEAD) whether the object already exists with the block's length and then
 * does nothing. Blocks up to the multipart threshold (default {@value #DEFAULT_MULTIPART_THRESHOLD} bytes,
 * configurable, at least {@value #MIN_MULTIPART_THRESHOLD} bytes, the S3 minimum part size) are written with a
 * single PutObject; larger blocks with a multipart upload in parts of the threshold size (larger if the block
 * would otherwise need more than {@value #MAX_PARTS} parts). S3 makes an object visible only once its PutObject
 * or CompleteMultipartUpload succeeds, so a failed or interrupted write never leaves a torn object under a
 * block's key; a failed multipart upload is also aborted so that the store frees its parts.
 * <p>
 * <b>Reads.</b> {@link #get} fetches the whole object into a fresh heap array (a native segment above 2 GiB);
 * {@link #getRange} fetches a slice of it with a ranged GET. Like every tier it does not verify content: the
 * {@link TieredBlockStore} does.
 * <p>
 * <b>Failures.</b> Every SDK failure becomes an {@link IOException} naming the operation, the object
 * ({@code s3://bucket/key}), the endpoint and the cause (HTTP status and S3 error code, an unreachable endpoint,
 * a time-out). Connections time out after {@value #CONNECT_TIMEOUT_MILLIS} ms, a call after
 * {@value #API_CALL_TIMEOUT_SECONDS} s (uploads get one more second per MiB), and a call is tried at most
 * {@value #MAX_ATTEMPTS} times, so an unreachable endpoint fails within seconds. No AWS type crosses the public
 * interface. Request checksums are only sent where S3 requires them (the SigV4 payload hash and TLS protect the
 * transfer, the store's SHA-256 the content), which keeps the tier compatible with S3 clones that do not support
 * the SDK's default trailing checksums.
 * <p>
 * <b>Accounting.</b> {@link #usedBytes()} is the size of the objects under the prefix that parse as block ids,
 * listed at construction, then tracked by this instance's puts and deletes (objects changed behind its back are
 * not accounted for). {@link #ids()} lists the bucket under the prefix every time: the bucket is the source of
 * truth. Objects whose key is not a block id (other data sharing the prefix, keys in "sub-directories") are
 * ignored.
 * <p>
 * Thread-safe. Puts and deletes of one block are serialised (striped locks), so racing puts of a block upload it
 * once and the accounting follows the order of the writes; other calls run concurrently on a pooled HTTP client.
 * {@link #close()} releases the client.
 */
public final class S3ObjectTier implements Tier
{
    /** Default size above which a block is written with a multipart upload (and the part size): 8 MiB. */
    public static final long DEFAULT_MULTIPART_THRESHOLD = 8L << 20;
    /** Smallest multipart threshold: 5 MiB, the minimum size of every part but the last in S3. */
    public static final long MIN_MULTIPART_THRESHOLD = 5L << 20;
    /** Largest multipart threshold: 5 GiB, the largest single PutObject and part in S3. */
    public static final long MAX_MULTIPART_THRESHOLD = 5L << 30;
    /** Most parts of one multipart upload in S3. */
    public static final int MAX_PARTS = 10_000;

    static final long CONNECT_TIMEOUT_MILLIS = 2_000;
    static final long API_CALL_TIMEOUT_SECONDS = 30;
    static final int MAX_ATTEMPTS = 3;

    private static final Duration CONNECT_TIMEOUT = Duration.ofMillis(CONNECT_TIMEOUT_MILLIS);
    private static final Duration SOCKET_TIMEOUT = Duration.ofSeconds(30);
    private static final Duration API_CALL_TIMEOUT = Duration.ofSeconds(API_CALL_TIMEOUT_SECONDS);
    private static final Duration ACQUIRE_TIMEOUT = Duration.ofSeconds(10);
    private static final int MAX_CONNECTIONS = 64;
    private static final int STRIPES = 1024;
    private static final long MAX_ARRAY = Integer.MAX_VALUE - 8;
    private static final String CONTENT_TYPE = "application/octet-stream";
    static final int MAX_PREFIX_LENGTH = 512;

    private final URI endpoint;
    private final String bucket;
    private final String prefix;
    private final long multipartThreshold;
    private final S3Client client;
    private final Map<BlockId, Long> sizes = new ConcurrentHashMap<>();
    private final AtomicLong usedBytes = new AtomicLong();
    private final Object[] stripes = new Object[STRIPES];
    private final AtomicBoolean closed = new AtomicBoolean();

    /**
     * Opens a tier with the {@link #DEFAULT_MULTIPART_THRESHOLD default multipart threshold}; see
     * {@link #S3ObjectTier(URI, String, String, String, String, String, long)}.
     */
    public S3ObjectTier(final URI endpoint, final String region, final String bucket, final String accessKey,
        final String secretKey, final String keyPrefix) throws IOException
    {
        this(endpoint, region, bucket, accessKey, secretKey, keyPrefix, DEFAULT_MULTIPART_THRESHOLD);
    }

    /**
     * Opens a tier on an existing bucket and counts the bytes of the blocks already under the prefix.
     *
     * @param endpoint the store's base URI, {@code http} or {@code https} (e.g. {@code https://s3.eu-west-1.amazonaws.com}
     *     or {@code http://127.0.0.1:9000}); buckets are addressed path-style.
     * @param region the signing region (e.g. {@code us-east-1}; S3 clones usually accept any).
     * @param bucket the bucket, named per the S3 rules (3 to 63 lower-case letters, digits, dots and hyphens, ...).
     * @param accessKey access key id.
     * @param secretKey secret access key (never printed).
     * @param keyPrefix prepended to every key, typically ending with {@code /}; {@code null} or empty for none. Must
     *     not start with {@code /}.
     * @param multipartThreshold blocks larger than this are written with a multipart upload in parts of this size;
     *     between {@value #MIN_MULTIPART_THRESHOLD} and {@value #MAX_MULTIPART_THRESHOLD} bytes.
     * @throws IllegalArgumentException if a parameter is invalid.
     * @throws IOException if the bucket cannot be listed (endpoint unreachable, bad credentials, no such bucket).
     */
    public S3ObjectTier(final URI endpoint, final String region, final String bucket, final String accessKey,
        final String secretKey, final String keyPrefix, final long multipartThreshold) throws IOException
    {
        this.endpoint = S3Names.validateEndpoint(endpoint);
        this.bucket = S3Names.validateBucket(bucket);
        this.prefix = S3Names.validatePrefix(keyPrefix);
        S3Names.requireText(region, "region");
        S3Names.requireText(accessKey, "access key");
        S3Names.requireText(secretKey, "secret key");
        if (multipartThreshold < MIN_MULTIPART_THRESHOLD || multipartThreshold > MAX_MULTIPART_THRESHOLD)
        {
            throw new IllegalArgumentException("invalid multipart threshold " + multipartThreshold + " bytes (must be "
                + MIN_MULTIPART_THRESHOLD + " (5 MiB) to " + MAX_MULTIPART_THRESHOLD + " (5 GiB))");
        }
        this.multipartThreshold = multipartThreshold;
        for (int i = 0; i < STRIPES; i++)
        {
            stripes[i] = new Object();
        }
        this.client = S3Client.builder()
            .endpointOverride(this.endpoint)
            .region(Region.of(region))
            .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(accessKey, secretKey)))
            .forcePathStyle(true)
            .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
            .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED)
            .httpClientBuilder(Apache5HttpClient.builder()
                .connectionTimeout(CONNECT_TIMEOUT)
                .socketTimeout(SOCKET_TIMEOUT)
                .connectionAcquisitionTimeout(ACQUIRE_TIMEOUT)
                .maxConnections(MAX_CONNECTIONS))
            .overrideConfiguration(o -> o
                .apiCallTimeout(API_CALL_TIMEOUT)
                .retryStrategy(r -> r.maxAttempts(MAX_ATTEMPTS)))
            .build();
        try
        {
            final Map<BlockId, Long> listed = list();
            sizes.putAll(listed);
            usedBytes.set(listed.values().stream().mapToLong(Long::longValue).sum());
        }
        catch (final IOException ex)
        {
            client.close();
            throw ex; // names the listing, the bucket, the endpoint and the cause
        }
        catch (final RuntimeException ex)
        {
            client.close();
            throw new IOException("cannot open the object tier on " + location(prefix) + ": " + ex, ex);
        }
    }

    @Override
    public String name()
    {
        return "object";
    }

    /** The bucket holding the blocks. */
    public String bucket()
    {
        return bucket;
    }

    /** The prefix of every key ("" for none). */
    public String keyPrefix()
    {
        return prefix;
    }

    /** Blocks larger than this many bytes are written with a multipart upload. */
    public long multipartThreshold()
    {
        return multipartThreshold;
    }

    /** The key the block {@code id} is (or would be) stored under: {@code <prefix><sha256 hex>-<length>}. */
    public String keyOf(final BlockId id)
    {
        return prefix + id;
    }

    @Override
    public MemorySegment get(final BlockId id) throws IOException
    {
        final String key = keyOf(id);
        try (ResponseInputStream<GetObjectResponse> in = client.getObject(b -> b.bucket(bucket).key(key)))
        {
            final Long length = in.response().contentLength();
            if (length == null || length < 0)
            {
                throw new IOException("the response has no content length");
            }
            return readFully(in, length);
        }
        catch (final SdkException ex)
        {
            if (S3Failures.isMissingKey(ex))
            {
                return null;
            }
            throw failure("GetObject", key, ex);
        }
        catch (final IOException | OutOfMemoryError ex)
        {
            throw failure("GetObject", key, ex);
        }
    }

    /**
     * {@code length} bytes of a block from {@code offset}, with a ranged GET; {@code null} if the tier does not
     * hold the block.
     *
     * @throws IllegalArgumentException if the range is empty or not within the block's {@link BlockId#length()}.
     * @throws IOException if the read fails or the store returns another number of bytes.
     */
    public MemorySegment getRange(final BlockId id, final long offset, final long length) throws IOException
    {
        if (offset < 0 || length <= 0 || offset > id.length() - length)
        {
            throw new IllegalArgumentException("invalid range offset=" + offset + " length=" + length + " of block "
                + id + " (need offset >= 0, length > 0, offset + length <= " + id.length() + ")");
        }
        final String key = keyOf(id);
        final String range = "bytes=" + offset + "-" + (offset + length - 1);
        try (ResponseInputStream<GetObjectResponse> in = client.getObject(b -> b.bucket(bucket).key(key).range(range)))
        {
            final Long returned = in.response().contentLength();
            if (in.response().contentRange() == null && returned != null && returned >= offset + length)
            {
                in.skipNBytes(offset); // the store ignored the range and sent the whole object
            }
            else if (returned == null || returned != length)
            {
                throw new IOException("asked for " + range + " but the response holds " + returned + " bytes ("
                    + in.response().contentRange() + ")");
            }
            return readFully(in, length);
        }
        catch (final SdkException ex)
        {
            if (S3Failures.isMissingKey(ex))
            {
                return null;
            }
            throw failure("GetObject " + range, key, ex);
        }
        catch (final IOException | OutOfMemoryError ex)
        {
            throw failure("GetObject " + range, key, ex);
        }
    }

    @Override
    public boolean put(final BlockId id, final MemorySegment bytes) throws IOException
    {
        Objects.requireNonNull(bytes, "bytes");
        final String key = keyOf(id);
        final long size = bytes.byteSize();
        synchronized (lockOf(id))
        {
            final Long existing = head(key, "HeadObject (before put)");
            if (existing == null || existing != size)
            {
                if (size <= multipartThreshold)
                {
                    putSingle(key, bytes);
                }
                else
                {
                    putMultipart(key, bytes);
                }
            }
            final Long previous = sizes.put(id, size);
            usedBytes.addAndGet(size - (previous == null ? 0 : previous));
            return true;
        }
    }

    @Override
    public boolean delete(final BlockId id) throws IOException
    {
        final String key = keyOf(id);
        synchronized (lockOf(id))
        {
            final boolean existed = head(key, "HeadObject (before delete)") != null;
            if (existed)
            {
                try
                {
                    client.deleteObject(b -> b.bucket(bucket).key(key));
                }
                catch (final SdkException ex)
                {
                    throw failure("DeleteObject", key, ex);
                }
            }
            final Long previous = sizes.remove(id);
            if (previous != null)
            {
                usedBytes.addAndGet(-previous);
            }
            return existed;
        }
    }

    @Override
    public boolean contains(final BlockId id) throws IOException
    {
        return head(keyOf(id), "HeadObject") != null;
    }

    @Override
    public Set<BlockId> ids() throws IOException
    {
        return Set.copyOf(list().keySet());
    }

    @Override
    public long usedBytes()
    {
        return usedBytes.get();
    }

    /** Closes the S3 client and its connection pool; idempotent. */
    @Override
    public void close()
    {
        if (closed.compareAndSet(false, true))
        {
            client.close();
        }
    }

    @Override
    public String toString()
    {
        return "S3ObjectTier{" + location(prefix) + "}";
    }

    // ---------------------------------------------------------------------------------------------------------

    private void putSingle(final String key, final MemorySegment bytes) throws IOException
    {
        try
        {
            client.putObject(b -> b.bucket(bucket).key(key).contentType(CONTENT_TYPE)
                .overrideConfiguration(o -> o.apiCallTimeout(uploadTimeout(bytes.byteSize()))), body(bytes));
        }
        catch (final SdkException ex)
        {
            throw failure("PutObject", key, ex);
        }
    }

    private void putMultipart(final String key, final MemorySegment bytes) throws IOException
    {
        final long size = bytes.byteSize();
        final long partSize = Math.max(multipartThreshold, ceilDiv(size, MAX_PARTS));
        if (partSize > MAX_MULTIPART_THRESHOLD)
        {
            throw new IOException("object tier cannot store " + size + " bytes under " + location(key)
                + ": larger than " + MAX_PARTS + " parts of 5 GiB");
        }
        final String uploadId;
        try
        {
            uploadId = client.createMultipartUpload(b -> b.bucket(bucket).key(key).contentType(CONTENT_TYPE))
                .uploadId();
        }
        catch (final SdkException ex)
        {
            throw failure("CreateMultipartUpload", key, ex);
        }
        String operation = "UploadPart";
        try
        {
            final List<CompletedPart> parts = new ArrayList<>();
            int number = 1;
            for (long offset = 0; offset < size; offset += partSize, number++)
            {
                final MemorySegment part = bytes.asSlice(offset, Math.min(partSize, size - offset));
                final int partNumber = number;
                operation = "UploadPart " + partNumber;
                final UploadPartResponse response = client.uploadPart(b -> b.bucket(bucket).key(key)
                    .uploadId(uploadId).partNumber(partNumber).contentLength(part.byteSize())
                    .overrideConfiguration(o -> o.apiCallTimeout(uploadTimeout(part.byteSize()))), body(part));
                parts.add(CompletedPart.builder().partNumber(partNumber).eTag(response.eTag()).build());
            }
            operation = "CompleteMultipartUpload";
            client.completeMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId)
                .multipartUpload(m -> m.parts(parts)));
        }
        catch (final RuntimeException ex)
        {
            final IOException failure = failure(operation + " (upload " + uploadId + ")", key, ex);
            try
            {
                client.abortMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId));
            }
            catch (final SdkException abort)
            {
                failure.addSuppressed(failure("AbortMultipartUpload (upload " + uploadId + ")", key, abort));
            }
            throw failure;
        }
    }

    /** The length of the object under {@code key}, or null if there is none. */
    private Long head(final String key, final String operation) throws IOException
    {
        try
        {
            final HeadObjectResponse response = client.headObject(b -> b.bucket(bucket).key(key));
            return response.contentLength() == null ? -1L : response.contentLength();
        }
        catch (final SdkException ex)
        {
            if (S3Failures.isMissingKey(ex))
            {
                return null;
            }
            throw failure(operation, key, ex);
        }
    }

    /** Every block under the prefix with its size. */
    private Map<BlockId, Long> list() throws IOException
    {
        final Map<BlockId, Long> blocks = new HashMap<>();
        final ListObjectsV2Request request = ListObjectsV2Request.builder().bucket(bucket)
            .prefix(prefix.isEmpty() ? null : prefix).build();
        try
        {
            for (final S3Object object : client.listObjectsV2Paginator(request).contents())
            {
                final BlockId id = parseKey(object.key());
                if (id != null)
                {
                    blocks.put(id, object.size() == null ? 0L : object.size());
                }
            }
        }
        catch (final SdkException ex)
        {
            throw failure("ListObjectsV2", prefix, ex);
        }
        return blocks;
    }

    /** The id a key stands for, or null for keys outside the prefix, foreign and non-canonical keys. */
    private BlockId parseKey(final String key)
    {
        if (!key.startsWith(prefix))
        {
            return null;
        }
        try
        {
            final BlockId id = BlockId.parse(key.substring(prefix.length()));
            return keyOf(id).equals(key) ? id : null;
        }
        catch (final IllegalArgumentException ex)
        {
            return null;
        }
    }

    private Object lockOf(final BlockId id)
    {
        return stripes[Math.floorMod(id.hashCode(), STRIPES)];
    }

    private String location(final String key)
    {
        return "s3://" + bucket + "/" + key + " at " + endpoint;
    }

    private IOException failure(final String operation, final String key, final Throwable cause)
    {
        final String message = "object tier: " + operation + " of " + location(key) + " failed: " + S3Failures.describe(cause);
        if (S3Failures.isInterrupted(cause))
        {
            final InterruptedIOException interrupted = new InterruptedIOException(message);
            interrupted.initCause(cause);
            return interrupted;
        }
        return new IOException(message, cause);
    }

    /** Uploads get the API call time-out plus a second per MiB (i.e. they may run at 1 MiB/s). */
    private static Duration uploadTimeout(final long bytes)
    {
        return API_CALL_TIMEOUT.plusSeconds(bytes >> 20);
    }

    /** A request body streaming a segment without copying it (a fresh stream for every attempt). */
    private static RequestBody body(final MemorySegment bytes)
    {
        return RequestBody.fromContentProvider(() -> new SegmentInputStream(bytes), bytes.byteSize(), CONTENT_TYPE);
    }

    /** Reads exactly {@code length} bytes into a new segment (a heap array unless it is over 2 GiB). */
    private static MemorySegment readFully(final InputStream in, final long length) throws IOException
    {
        if (length <= MAX_ARRAY)
        {
            final byte[] array = new byte[(int)length];
            final int n = in.readNBytes(array, 0, array.length);
            if (n < length)
            {
                throw new IOException("truncated response: " + n + " of " + length + " bytes");
            }
            return MemorySegment.ofArray(array);
        }
        final MemorySegment target = Arena.ofAuto().allocate(length, 64);
        final byte[] chunk = new byte[1 << 20];
        for (long done = 0; done < length; )
        {
            final int n = in.read(chunk, 0, (int)Math.min(chunk.length, length - done));
            if (n < 0)
            {
                throw new IOException("truncated response: " + done + " of " + length + " bytes");
            }
            MemorySegment.copy(chunk, 0, target, ValueLayout.JAVA_BYTE, done, n);
            done += n;
        }
        return target;
    }

    private static long ceilDiv(final long a, final long b)
    {
        return (a + b - 1) / b;
    }

}
