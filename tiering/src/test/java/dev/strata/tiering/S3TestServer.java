package dev.strata.tiering;

import org.gaul.s3proxy.S3Proxy;
import org.gaul.s3proxy.auth.AuthenticationType;
import org.gaul.s3proxy.blobstore.BlobStore;
import org.gaul.s3proxy.nio2blob.TransientNio2BlobStore;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A real S3-compatible server for tests: S3Proxy on 127.0.0.1 with an ephemeral port, backed by an in-memory
 * (transient) blob store, with AWS V2/V4 signature authentication and one bucket, {@link #BUCKET}.
 * <p>
 * {@link #start()} starts a private server (close it when done); {@link #shared()} lazily starts one server for
 * the whole test JVM, stopped by a shutdown hook (used by {@link TierContractTest}, whose factory list cannot own
 * a lifecycle). Other modules use it through this module's test jar.
 */
public final class S3TestServer implements AutoCloseable
{
    public static final String IDENTITY = "strata-test-access-key";
    public static final String CREDENTIAL = "strata-test-secret-key-0123456789";
    public static final String REGION = "us-east-1";
    public static final String BUCKET = "strata-blocks";

    private static final Duration START_TIMEOUT = Duration.ofSeconds(30);
    private static final AtomicInteger PREFIXES = new AtomicInteger();
    private static S3TestServer shared;

    private final BlobStore blobStore;
    private final S3Proxy proxy;
    private final URI endpoint;

    private S3TestServer(final BlobStore blobStore, final S3Proxy proxy, final URI endpoint)
    {
        this.blobStore = blobStore;
        this.proxy = proxy;
        this.endpoint = endpoint;
    }

    /** Starts a server of its own with the bucket {@link #BUCKET} created through the S3 API. */
    public static S3TestServer start() throws Exception
    {
        final BlobStore blobStore = new TransientNio2BlobStore();
        final S3Proxy proxy = S3Proxy.builder()
            .blobStore(blobStore)
            .endpoint(URI.create("http://127.0.0.1:0"))
            .awsAuthentication(AuthenticationType.AWS_V2_OR_V4, IDENTITY, CREDENTIAL)
            .build();
        proxy.start();
        final long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        while (!"STARTED".equals(proxy.getState()))
        {
            if (System.nanoTime() > deadline)
            {
                proxy.stop();
                throw new IllegalStateException("S3Proxy did not start within " + START_TIMEOUT + ": "
                    + proxy.getState());
            }
            Thread.sleep(10);
        }
        final S3TestServer server =
            new S3TestServer(blobStore, proxy, URI.create("http://127.0.0.1:" + proxy.getPort()));
        try (S3Client client = server.client())
        {
            client.createBucket(b -> b.bucket(BUCKET));
        }
        catch (final RuntimeException ex)
        {
            server.close();
            throw ex;
        }
        return server;
    }

    /** The server shared by the whole test JVM, started on first use. */
    static synchronized S3TestServer shared()
    {
        if (shared == null)
        {
            try
            {
                shared = start();
            }
            catch (final Exception ex)
            {
                throw new IllegalStateException("cannot start the shared S3Proxy: " + ex, ex);
            }
            final S3TestServer server = shared;
            Runtime.getRuntime().addShutdownHook(new Thread(server::close, "s3proxy-shutdown"));
        }
        return shared;
    }

    /**
     * An S3 tier for the contract: a key prefix of its own per test directory, so every test starts empty and a
     * reopen on the same directory finds the same blocks.
     */
    static Tier openContractTier(final Path dir) throws IOException
    {
        final String name = dir.toAbsolutePath().getFileName().toString().replaceAll("[^A-Za-z0-9_-]", "_");
        return shared().open("contract/" + name + "/");
    }

    /** A unique key prefix for one test. */
    static String uniquePrefix(final String test)
    {
        return "test/" + test + "-" + PREFIXES.incrementAndGet() + "/";
    }

    public URI endpoint()
    {
        return endpoint;
    }

    S3ObjectTier open(final String prefix) throws IOException
    {
        return new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, CREDENTIAL, prefix);
    }

    S3ObjectTier open(final String prefix, final long multipartThreshold) throws IOException
    {
        return new S3ObjectTier(endpoint, REGION, BUCKET, IDENTITY, CREDENTIAL, prefix, multipartThreshold);
    }

    /** A plain SDK client on this server, for what the tier does not expose (ETags, foreign keys, uploads). */
    S3Client client()
    {
        return S3Client.builder()
            .endpointOverride(endpoint)
            .region(Region.of(REGION))
            .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(IDENTITY, CREDENTIAL)))
            .forcePathStyle(true)
            .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
            .httpClientBuilder(Apache5HttpClient.builder())
            .build();
    }

    @Override
    public void close()
    {
        try
        {
            proxy.stop();
        }
        catch (final Exception ex)
        {
            throw new IllegalStateException("cannot stop S3Proxy at " + endpoint + ": " + ex, ex);
        }
        finally
        {
            blobStore.close();
        }
    }
}
