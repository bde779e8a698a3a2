package dev.strata.paramclient;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.transport.BlockId;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A client of the parameter service's admin API (the endpoints are listed in {@code docs/architecture.md}): what
 * the CLI and compute nodes use to upload, inspect and manage versions. Answers are the records of
 * {@link ServiceInfo}. Every failure is a {@link ServiceException} with the HTTP status (0 when the service could
 * not be reached) and the service's message. Thread-safe.
 */
public final class ParamClient
{
    /** Unknown fields are ignored: a newer service may add some. */
    private static final ObjectMapper JSON = new ObjectMapper()
        .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    /** A failed call: {@code status} is the HTTP status, or 0 when the service did not answer. */
    public static final class ServiceException extends IOException
    {
        private final int status;

        public ServiceException(final int status, final String message)
        {
            super(message);
            this.status = status;
        }

        public int status()
        {
            return status;
        }
    }

    private final String base;
    private final String token;
    private final HttpClient http;

    /**
     * @param server {@code host:port} of the admin API (or a full {@code http://} URL).
     * @param token  sent as a bearer token; may be null.
     */
    public ParamClient(final String server, final String token)
    {
        if (server == null || server.isBlank())
        {
            throw new IllegalArgumentException("no server given (--server HOST:PORT or STRATA_SERVER)");
        }
        final String s = server.contains("://") ? server : "http://" + server;
        this.base = s.endsWith("/") ? s.substring(0, s.length() - 1) : s;
        try
        {
            URI.create(base);
        }
        catch (final IllegalArgumentException ex)
        {
            throw new IllegalArgumentException("invalid server address '" + server + "'", ex);
        }
        this.token = token;
        this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    }

    /** The token this client sends (null for none): block pulls carry it too. */
    public String token()
    {
        return token;
    }

    public ServiceInfo.Health health() throws IOException
    {
        return json(get("/health"), ServiceInfo.Health.class);
    }

    public ServiceInfo.Endpoints endpoints() throws IOException
    {
        return json(get("/v1/endpoints"), ServiceInfo.Endpoints.class);
    }

    /** Where the service's statistics collector listens for node reports ({@code GET /v1/dashboard/endpoints}). */
    public ServiceInfo.Endpoints statsEndpoints() throws IOException
    {
        return json(get("/v1/dashboard/endpoints"), ServiceInfo.Endpoints.class);
    }

    public List<ServiceInfo.ModelSummary> models() throws IOException
    {
        return json(get("/v1/models"), listOf(ServiceInfo.ModelSummary.class));
    }

    public List<ServiceInfo.Version> versions(final String model) throws IOException
    {
        return json(get("/v1/models/" + seg(model) + "/versions"), listOf(ServiceInfo.Version.class));
    }

    public ServiceInfo.Version show(final String model, final String versionOrLabel) throws IOException
    {
        return json(get("/v1/models/" + seg(model) + "/versions/" + seg(versionOrLabel)),
            ServiceInfo.Version.class);
    }

    /** The manifest of a version, with the number the label resolved to. */
    public record PinnedManifest(int version, Manifest manifest, byte[] encoded)
    {
    }

    public PinnedManifest manifest(final String model, final String versionOrLabel) throws IOException
    {
        final HttpResponse<byte[]> r = send(request("/v1/models/" + seg(model) + "/versions/" + seg(versionOrLabel) +
            "/manifest").GET());
        final byte[] bytes = r.body();
        final int version = Integer.parseInt(r.headers().firstValue("X-Strata-Version").orElse("0"));
        return new PinnedManifest(version, Manifest.decode(bytes), bytes);
    }

    public List<BlockId> missing(final List<BlockId> ids) throws IOException
    {
        final StringBuilder body = new StringBuilder();
        for (final BlockId id : ids)
        {
            body.append(id).append('\n');
        }
        final String text = new String(send(request("/v1/blocks/missing")
            .POST(HttpRequest.BodyPublishers.ofString(body.toString()))).body(), StandardCharsets.US_ASCII);
        final List<BlockId> missing = new ArrayList<>();
        for (final String line : text.split("\n"))
        {
            if (!line.isBlank())
            {
                missing.add(BlockId.parse(line.strip()));
            }
        }
        return missing;
    }

    /**
     * Uploads one block. A service whose upload slots are all taken answers 503: the call retries with a growing
     * pause (up to about a minute in all) before it gives up.
     */
    public void putBlock(final BlockId id, final byte[] bytes) throws IOException
    {
        long pauseMillis = 50;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                send(request("/v1/blocks/" + id).PUT(HttpRequest.BodyPublishers.ofByteArray(bytes)));
                return;
            }
            catch (final ServiceException ex)
            {
                if (ex.status() != 503 || attempt == 30)
                {
                    throw ex;
                }
            }
            try
            {
                Thread.sleep(pauseMillis);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("upload interrupted");
            }
            pauseMillis = Math.min(pauseMillis * 2, 2_000);
        }
    }

    public byte[] getBlock(final BlockId id) throws IOException
    {
        final byte[] bytes = send(request("/v1/blocks/" + id).GET()).body();
        if (!id.matches(java.lang.foreign.MemorySegment.ofArray(bytes)))
        {
            throw new ServiceException(0, "block " + id + " arrived with other content");
        }
        return bytes;
    }

    /** Begins (or resumes) an upload. */
    public ServiceInfo.UploadBegun beginUpload(final String model, final String manifestDigest) throws IOException
    {
        return json(send(request("/v1/models/" + seg(model) + "/uploads?manifest=" + seg(manifestDigest))
            .POST(HttpRequest.BodyPublishers.noBody())), ServiceInfo.UploadBegun.class);
    }

    public ServiceInfo.Version commit(final String model, final int version, final byte[] manifest) throws IOException
    {
        return post("/v1/models/" + seg(model) + "/versions/" + version + "/commit", manifest, ServiceInfo.Version.class);
    }

    public ServiceInfo.Version promote(final String model, final int version) throws IOException
    {
        return post("/v1/models/" + seg(model) + "/versions/" + version + "/promote", new byte[0],
            ServiceInfo.Version.class);
    }

    public ServiceInfo.Version canary(final String model, final int version, final int weightPercent)
        throws IOException
    {
        return post("/v1/models/" + seg(model) + "/versions/" + version + "/canary?weight=" + weightPercent,
            new byte[0], ServiceInfo.Version.class);
    }

    public ServiceInfo.Version rollback(final String model) throws IOException
    {
        return post("/v1/models/" + seg(model) + "/rollback", new byte[0], ServiceInfo.Version.class);
    }

    /** Deletes every stored block no committed version uses. */
    public ServiceInfo.GcReport gc() throws IOException
    {
        return post("/v1/gc", new byte[0], ServiceInfo.GcReport.class);
    }

    public ServiceInfo.Version delete(final String model, final int version) throws IOException
    {
        return json(send(request("/v1/models/" + seg(model) + "/versions/" + version).DELETE()),
            ServiceInfo.Version.class);
    }

    /** Re-checks every block of a version; a 409 answer (lost blocks) comes back as its report, not an error. */
    public ServiceInfo.VerifyReport verify(final String model, final String versionOrLabel) throws IOException
    {
        final HttpResponse<byte[]> r = http(request("/v1/models/" + seg(model) + "/versions/" + seg(versionOrLabel) +
            "/verify").POST(HttpRequest.BodyPublishers.noBody()));
        if (r.statusCode() == 409 && JSON.readTree(r.body()).has("lost"))
        {
            return json(r, ServiceInfo.VerifyReport.class);
        }
        return json(check(r), ServiceInfo.VerifyReport.class);
    }

    public ServiceInfo.Leases lease(final String node, final String model, final int version, final long ttlMillis)
        throws IOException
    {
        return post("/v1/models/" + seg(model) + "/versions/" + version + "/leases?node=" + seg(node) + "&ttl_ms=" +
            ttlMillis, new byte[0], ServiceInfo.Leases.class);
    }

    public ServiceInfo.Leases release(final String node, final String model, final int version) throws IOException
    {
        return json(send(request("/v1/models/" + seg(model) + "/versions/" + version + "/leases?node=" + seg(node))
            .DELETE()), ServiceInfo.Leases.class);
    }

    private <T> T post(final String path, final byte[] body, final Class<T> type) throws IOException
    {
        return json(send(request(path).POST(HttpRequest.BodyPublishers.ofByteArray(body))), type);
    }

    private HttpResponse<byte[]> get(final String path) throws IOException
    {
        return send(request(path).GET());
    }

    private HttpRequest.Builder request(final String path)
    {
        final HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofMinutes(5));
        if (token != null && !token.isEmpty())
        {
            b.header("Authorization", "Bearer " + token);
        }
        return b;
    }

    private HttpResponse<byte[]> send(final HttpRequest.Builder request) throws IOException
    {
        return check(http(request));
    }

    private HttpResponse<byte[]> http(final HttpRequest.Builder request) throws IOException
    {
        try
        {
            return http.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        }
        catch (final ConnectException ex)
        {
            throw new ServiceException(0, "cannot reach the parameter service at " + base + " (connection refused)");
        }
        catch (final HttpTimeoutException ex)
        {
            throw new ServiceException(0, "the parameter service at " + base + " did not answer in time");
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new ServiceException(0, "interrupted");
        }
        catch (final IOException ex)
        {
            throw new ServiceException(0, "cannot talk to the parameter service at " + base + ": " + ex.getMessage());
        }
    }

    private static HttpResponse<byte[]> check(final HttpResponse<byte[]> r) throws ServiceException
    {
        if (r.statusCode() >= 200 && r.statusCode() < 300)
        {
            return r;
        }
        String message;
        try
        {
            final ServiceInfo.Error e = JSON.readValue(r.body(), ServiceInfo.Error.class);
            message = e.error() != null ? e.error() : "HTTP " + r.statusCode();
        }
        catch (final IOException ex)
        {
            message = "HTTP " + r.statusCode();
        }
        throw new ServiceException(r.statusCode(), message);
    }

    private static <T> T json(final HttpResponse<byte[]> r, final Class<T> type) throws IOException
    {
        return JSON.readValue(r.body(), type);
    }

    private static <T> T json(final HttpResponse<byte[]> r, final JavaType type) throws IOException
    {
        return JSON.readValue(r.body(), type);
    }

    private static JavaType listOf(final Class<?> element)
    {
        return JSON.getTypeFactory().constructCollectionType(List.class, element);
    }

    private static String seg(final String s)
    {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }
}
