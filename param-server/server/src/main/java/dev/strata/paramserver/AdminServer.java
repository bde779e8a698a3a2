package dev.strata.paramserver;

import dev.strata.paramclient.Manifest;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.transport.BlockId;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.Fields;
import org.eclipse.jetty.util.thread.QueuedThreadPool;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parameter service's HTTP admin API (Jetty 12, core handlers). JSON everywhere except block bodies,
 * manifests (binary) and {@code /metrics} (Prometheus text).
 * <pre>
 * GET    /health                                   liveness and a summary (open)
 * GET    /metrics                                  Prometheus (open)
 * GET    /v1/endpoints                             Aeron endpoints of the block server
 * GET    /v1/models                                models with their stable and canary versions
 * GET    /v1/models/{m}/versions                   every version with its state
 * GET    /v1/models/{m}/versions/{v|stable|canary} one version: state, manifest digest, sizes
 * GET    /v1/models/{m}/versions/{v}/manifest      the binary manifest                    [read token]
 * POST   /v1/blocks/missing                        body: block ids, one per line → the missing ones [token]
 * PUT    /v1/blocks/{id}                           upload one block (checked against its id)          [token]
 * GET    /v1/blocks/{id}                           one block's bytes                                  [read token]
 * POST   /v1/models/{m}/uploads?manifest=DIGEST    begin or resume the upload of a version            [token]
 * POST   /v1/models/{m}/versions/{v}/commit        body: the manifest; atomic commit                  [token]
 * POST   /v1/models/{m}/versions/{v}/promote | canary?weight=W | verify                           [token]
 * POST   /v1/models/{m}/rollback                                                                  [token]
 * DELETE /v1/models/{m}/versions/{v}                                                              [token]
 * POST   /v1/models/{m}/versions/{v}/leases?node=N&amp;ttl_ms=T, DELETE the same to release           [token]
 * POST   /v1/gc                                    delete every stored block no committed version uses  [token]
 * </pre>
 * Tokens: the admin token is accepted everywhere and needed for mutations; with reads protected (the default when a
 * token is set) every read above, apart from {@code /health} and {@code /metrics}, needs the admin token or the
 * read-only token, which also takes and releases leases (what a compute node does) and is refused (403) elsewhere.
 * Answers are the records of {@link ServiceInfo}. Errors are {@code {"error": "..."}} with a status chosen by the
 * exception's type: 400 (bad input: {@link IllegalArgumentException}, a registry {@code INVALID}), 401 (token),
 * 404 (a registry {@code NOT_FOUND}), 409 (a registry {@code CONFLICT}), 413 (too large), 500 (anything else). Model names are validated by the registry (no path traversal, at most 64 characters).
 */
final class AdminServer implements AutoCloseable
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int MAX_MANIFEST_BYTES = 64 << 20;
    private static final int MAX_ID_LIST_BYTES = 16 << 20;
    /** Threads of the admin API's pool. */
    static final int THREADS = 32;

    private final ParamService service;
    private final byte[] token;
    private final byte[] readToken;
    private final boolean protectReads;
    private final Server server;
    private final ServerConnector connector;
    /** Requests reading a body now: bounded, so that slow bodies never hold every thread. */
    private final java.util.concurrent.Semaphore bodySlots;
    private final long maxBodyNanos;
    /** The dashboard's pages and endpoints ({@code /dashboard}, {@code /v1/dashboard/...}), once attached. */
    private volatile Dashboard dashboard;

    /** An error with its HTTP status. */
    static final class HttpError extends RuntimeException
    {
        final int status;

        HttpError(final int status, final String message)
        {
            super(message);
            this.status = status;
        }
    }

    AdminServer(final ParamService service, final String bind, final int port, final String token,
        final String readToken, final boolean protectReads, final int uploadSlots, final long maxBodyMillis)
        throws Exception
    {
        this.bodySlots = new java.util.concurrent.Semaphore(uploadSlots);
        this.maxBodyNanos = java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(maxBodyMillis);
        this.service = service;
        this.token = token == null ? null : token.getBytes(StandardCharsets.UTF_8);
        this.readToken = readToken == null ? null : readToken.getBytes(StandardCharsets.UTF_8);
        this.protectReads = protectReads;
        final QueuedThreadPool threads = new QueuedThreadPool(THREADS, 2);
        threads.setName("strata-admin");
        threads.setDaemon(true);
        server = new Server(threads);
        server.setErrorHandler(new JsonErrors());
        io.micrometer.core.instrument.Gauge.builder("strata.admin.threads.busy", threads,
            QueuedThreadPool::getBusyThreads).register(service.metrics());
        io.micrometer.core.instrument.Gauge.builder("strata.admin.upload.slots.used", bodySlots,
            s -> uploadSlots - s.availablePermits()).register(service.metrics());
        connector = new ServerConnector(server);
        connector.setHost(bind);
        connector.setPort(port);
        connector.setIdleTimeout(maxBodyMillis); // a body that stops arriving fails its read after this
        server.addConnector(connector);
        server.setHandler(new Handler.Abstract()
        {
            @Override
            public boolean handle(final Request request, final Response response, final Callback callback)
            {
                AdminServer.this.handle(request, response, callback);
                return true;
            }
        });
        server.start();
    }

    /**
     * Errors Jetty answers itself (a malformed request line, a URI or headers too long, a failure outside the
     * handler) as the API's JSON error body instead of Jetty's HTML page.
     */
    private static final class JsonErrors extends org.eclipse.jetty.server.handler.ErrorHandler
    {
        @Override
        protected void generateResponse(final Request request, final Response response, final int code,
            final String message, final Throwable cause, final Callback callback) throws IOException
        {
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
            response.write(true, ByteBuffer.wrap(JSON.writeValueAsBytes(new ServiceInfo.Error(describe(code,
                message)))), callback);
        }

        @Override
        public ByteBuffer badMessageError(final int status, final String reason,
            final org.eclipse.jetty.http.HttpFields.Mutable fields)
        {
            fields.put(HttpHeader.CONTENT_TYPE, "application/json");
            try
            {
                return ByteBuffer.wrap(JSON.writeValueAsBytes(new ServiceInfo.Error(describe(status, reason))));
            }
            catch (final IOException ex)
            {
                return ByteBuffer.wrap("{\"error\":\"bad request\"}".getBytes(StandardCharsets.US_ASCII));
            }
        }

        private static String describe(final int status, final String message)
        {
            final String reason = org.eclipse.jetty.http.HttpStatus.getMessage(status);
            return message == null || message.isBlank() ? status + " " + reason : status + " " + reason + ": " +
                message;
        }
    }

    /** Serves the dashboard's paths from now on. */
    void dashboard(final Dashboard d)
    {
        this.dashboard = d;
    }

    int port()
    {
        return connector.getLocalPort();
    }

    @Override
    public void close() throws Exception
    {
        server.stop();
    }

    private void handle(final Request request, final Response response, final Callback callback)
    {
        try
        {
            route(request, response, callback);
        }
        catch (final HttpError ex)
        {
            error(response, callback, ex.status, ex.getMessage());
        }
        catch (final RegistryException ex)
        {
            error(response, callback, switch (ex.kind())
            {
                case NOT_FOUND -> 404;
                case INVALID -> 400;
                case CONFLICT -> 409;
            }, ex.getMessage());
        }
        catch (final IllegalArgumentException ex)
        {
            error(response, callback, 400, ex.getMessage());
        }
        catch (final Exception ex)
        {
            error(response, callback, 500, ex.getClass().getSimpleName() + ": " + ex.getMessage());
        }
    }

    private void route(final Request request, final Response response, final Callback callback) throws Exception
    {
        final Dashboard d = dashboard;
        if (d != null && d.handle(request, response, callback))
        {
            return;
        }
        final String method = request.getMethod();
        final String path = request.getHttpURI().getPath();
        final String[] p = path.split("/", -1); // p[0] is ""
        final Fields query = Request.extractQueryParameters(request);

        if (path.equals("/health") && method.equals("GET"))
        {
            json(response, callback, 200, new ServiceInfo.Health("ok", service.models().size(),
                service.blockServer().served()));
            return;
        }
        if (path.equals("/metrics") && method.equals("GET"))
        {
            send(response, callback, 200, "text/plain; version=0.0.4; charset=utf-8",
                service.metrics().scrape().getBytes(StandardCharsets.UTF_8));
            return;
        }
        if (p.length < 3 || !p[1].equals("v1"))
        {
            throw new HttpError(404, "no such endpoint: " + method + " " + path);
        }
        switch (p[2])
        {
            case "endpoints" ->
            {
                requireRead(request);
                json(response, callback, 200, service.endpoints());
            }
            case "gc" ->
            {
                if (!method.equals("POST") || p.length != 3)
                {
                    throw new HttpError(405, "use POST /v1/gc");
                }
                requireToken(request);
                final long[] r = service.sweep();
                json(response, callback, 200, new ServiceInfo.GcReport(r[0], r[1]));
            }
            case "blocks" -> blocks(request, response, callback, method, p);
            case "models" -> models(request, response, callback, method, p, query);
            default -> throw new HttpError(404, "no such endpoint: " + method + " " + path);
        }
    }

    private void blocks(final Request request, final Response response, final Callback callback, final String method,
        final String[] p) throws Exception
    {
        if (p.length == 4 && p[3].equals("missing") && method.equals("POST"))
        {
            requireToken(request);
            final String body = new String(body(request, MAX_ID_LIST_BYTES), StandardCharsets.US_ASCII);
            final List<BlockId> ids = new ArrayList<>();
            for (final String line : body.split("\n"))
            {
                if (!line.isBlank())
                {
                    ids.add(BlockId.parse(line.strip()));
                }
            }
            final StringBuilder out = new StringBuilder();
            for (final BlockId id : service.missing(ids))
            {
                out.append(id).append('\n');
            }
            send(response, callback, 200, "text/plain", out.toString().getBytes(StandardCharsets.US_ASCII));
            return;
        }
        if (p.length != 4)
        {
            throw new HttpError(404, "no such endpoint");
        }
        final BlockId id = BlockId.parse(p[3]);
        switch (method)
        {
            case "PUT" ->
            {
                requireToken(request);
                if (id.length() > ParamService.MAX_BLOCK_BYTES)
                {
                    throw new HttpError(413, "block of " + id.length() + " bytes is over the limit of " +
                        ParamService.MAX_BLOCK_BYTES);
                }
                final byte[] bytes = body(request, (int)id.length());
                final boolean stored = service.putBlock(id, bytes);
                json(response, callback, stored ? 201 : 200, new ServiceInfo.BlockStored(id.toString(), stored));
            }
            case "GET" ->
            {
                requireRead(request);
                send(response, callback, 200, "application/octet-stream", service.readBlock(id));
            }
            default -> throw new HttpError(405, method + " is not allowed on a block");
        }
    }

    private void models(final Request request, final Response response, final Callback callback, final String method,
        final String[] p, final Fields query) throws Exception
    {
        if (p.length == 3 && method.equals("GET"))
        {
            requireRead(request);
            final List<ServiceInfo.ModelSummary> list = new ArrayList<>();
            for (final String name : service.models())
            {
                final List<ModelRegistry.Version> versions = service.versions(name);
                list.add(new ServiceInfo.ModelSummary(name, versions.size(), labelled(name, "stable"),
                    labelled(name, "canary"), versions.stream().filter(v -> v.state() == VersionState.UPLOADING)
                        .map(ModelRegistry.Version::number).toList()));
            }
            json(response, callback, 200, list);
            return;
        }
        if (p.length < 5)
        {
            throw new HttpError(404, "no such endpoint");
        }
        final String model = ModelRegistry.checkName(decoded(p[3]));
        switch (p[4])
        {
            case "uploads" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                final Map.Entry<ModelRegistry.Version, Boolean> v = service.beginUpload(model,
                    query.getValue("manifest"));
                json(response, callback, v.getValue() ? 200 : 201,
                    new ServiceInfo.UploadBegun(v.getKey().number(), v.getValue(),
                        v.getKey().state() != VersionState.UPLOADING));
            }
            case "rollback" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                json(response, callback, 200, describe(service.execute(new RegistryCommand.Rollback(model))));
            }
            case "versions" -> versions(request, response, callback, method, p, query, model);
            default -> throw new HttpError(404, "no such endpoint");
        }
    }

    private void versions(final Request request, final Response response, final Callback callback, final String method,
        final String[] p, final Fields query, final String model) throws Exception
    {
        if (p.length == 5)
        {
            requireMethod(method, "GET");
            requireRead(request);
            final List<ServiceInfo.Version> list = new ArrayList<>();
            for (final ModelRegistry.Version v : service.versions(model))
            {
                list.add(describe(v));
            }
            json(response, callback, 200, list);
            return;
        }
        final String ref = p[5];
        if (p.length == 6)
        {
            if (method.equals("DELETE"))
            {
                requireToken(request);
                json(response, callback, 200, describe(service.execute(
                    new RegistryCommand.Delete(model, number(ref), System.currentTimeMillis()))));
                return;
            }
            requireMethod(method, "GET");
            requireRead(request);
            final ModelRegistry.Version v = service.resolve(model, ref);
            final Manifest manifest = service.manifest(v);
            long bytes = 0;
            for (final Manifest.Tensor t : manifest.tensors())
            {
                bytes += t.byteSize();
            }
            final ServiceInfo.Version d = describe(v);
            json(response, callback, 200, new ServiceInfo.Version(d.model(), d.version(), d.state(), d.manifest(),
                d.canaryWeight(), manifest.tensors().size(), bytes, manifest.allBlocks().size(),
                new java.util.HashSet<>(manifest.allBlocks()).size(), service.leases(model, v.number())));
            return;
        }
        final String action = p[6];
        switch (action)
        {
            case "manifest" ->
            {
                requireRead(request);
                requireMethod(method, "GET");
                final ModelRegistry.Version v = service.resolve(model, ref);
                response.getHeaders().put("X-Strata-Version", String.valueOf(v.number()));
                send(response, callback, 200, "application/octet-stream", service.manifestBytes(v));
            }
            case "commit" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                json(response, callback, 200, describe(service.commit(model, number(ref),
                    body(request, MAX_MANIFEST_BYTES))));
            }
            case "promote" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                json(response, callback, 200, describe(service.execute(new RegistryCommand.Promote(model, number(ref)))));
            }
            case "canary" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                final int weight = integer(query.getValue("weight"), "weight");
                json(response, callback, 200, describe(service.execute(
                    new RegistryCommand.Canary(model, number(ref), weight))));
            }
            case "verify" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                final ParamService.VerifyReport r = service.verify(service.resolve(model, ref));
                json(response, callback, r.lost().isEmpty() ? 200 : 409, new ServiceInfo.VerifyReport(r.blocks(),
                    r.good(), r.lost().stream().map(BlockId::toString).toList(), r.repairsAfter() - r.repairsBefore()));
            }
            case "leases" ->
            {
                requireNodeToken(request);
                final String node = query.getValue("node");
                if (method.equals("POST"))
                {
                    final long ttl = integer(query.getValue("ttl_ms"), "ttl_ms");
                    service.execute(new RegistryCommand.AcquireLease(node, model, number(ref),
                        System.currentTimeMillis() + ttl));
                }
                else
                {
                    requireMethod(method, "DELETE");
                    service.execute(new RegistryCommand.ReleaseLease(node, model, number(ref)));
                }
                json(response, callback, 200, new ServiceInfo.Leases(service.leases(model, number(ref))));
            }
            default -> throw new HttpError(404, "no such endpoint");
        }
    }

    /** A path segment percent-decoded (UTF-8), so that errors show names as they were typed. */
    private static String decoded(final String segment)
    {
        try
        {
            return java.net.URLDecoder.decode(segment.replace("+", "%2B"), StandardCharsets.UTF_8);
        }
        catch (final IllegalArgumentException ex)
        {
            return segment;
        }
    }

    private Integer labelled(final String model, final String label)
    {
        try
        {
            return service.resolve(model, label).number();
        }
        catch (final RegistryException ex)
        {
            return null;
        }
    }

    private static ServiceInfo.Version describe(final ModelRegistry.Version v)
    {
        return ServiceInfo.Version.of(v.model(), v.number(), v.state().name().toLowerCase(java.util.Locale.ROOT),
            v.manifestDigest(), v.state() == VersionState.CANARY ? v.canaryWeight() : null);
    }

    private static int number(final String ref)
    {
        return integer(ref, "version");
    }

    private static int integer(final String text, final String what)
    {
        try
        {
            return Integer.parseInt(text);
        }
        catch (final NumberFormatException ex)
        {
            throw new HttpError(400, what + " must be a number, not '" + text + "'");
        }
    }

    private static void requireMethod(final String method, final String allowed)
    {
        if (!method.equals(allowed))
        {
            throw new HttpError(405, method + " is not allowed here (use " + allowed + ")");
        }
    }

    /** A mutation: the admin token only (a read-only token is refused with 403). */
    private void requireToken(final Request request)
    {
        if (token == null)
        {
            return;
        }
        final byte[] given = given(request);
        if (MessageDigest.isEqual(token, given))
        {
            return;
        }
        if (readToken != null && MessageDigest.isEqual(readToken, given))
        {
            throw new HttpError(403, "this token is read-only (reads and leases); this operation needs the admin " +
                "token");
        }
        throw new HttpError(401, given.length == 0 ? "this operation needs a token (Authorization: Bearer ...)" :
            "wrong token");
    }

    /** A read, unless reads are open: the admin token or the read-only token. */
    private void requireRead(final Request request)
    {
        if (protectReads)
        {
            requireNodeToken(request);
        }
    }

    /** What a compute node does (reads, leases): the admin token or the read-only token. */
    private void requireNodeToken(final Request request)
    {
        if (token == null || readToken != null && MessageDigest.isEqual(readToken, given(request)))
        {
            return;
        }
        requireToken(request);
    }

    private static byte[] given(final Request request)
    {
        final String auth = request.getHeaders().get(HttpHeader.AUTHORIZATION);
        return auth != null && auth.startsWith("Bearer ") ? auth.substring(7).getBytes(StandardCharsets.UTF_8) :
            new byte[0];
    }

    /**
     * Reads a request body of at most {@code limit} bytes within the body time limit, holding one of the body slots:
     * with none free the request is answered 503 at once (the client retries), and a body still arriving at the
     * deadline (or one that stops arriving: the idle timeout fails the read) is answered 408.
     */
    private byte[] body(final Request request, final int limit) throws IOException
    {
        final long declared = request.getLength();
        if (declared > limit)
        {
            throw new HttpError(413, "request body of " + declared + " bytes is over the limit of " + limit);
        }
        if (!bodySlots.tryAcquire())
        {
            throw new HttpError(503, "busy: every upload slot is taken; retry shortly");
        }
        final long deadline = System.nanoTime() + maxBodyNanos;
        try (InputStream in = Content.Source.asInputStream(request))
        {
            final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream(
                (int)Math.min(Math.max(declared, 0), limit) + 1);
            final byte[] chunk = new byte[64 << 10];
            int n;
            while ((n = in.read(chunk, 0, (int)Math.min(chunk.length, limit + 1L - out.size()))) > 0)
            {
                out.write(chunk, 0, n);
                if (out.size() > limit)
                {
                    throw new HttpError(413, "request body is over the limit of " + limit + " bytes");
                }
                if (System.nanoTime() - deadline > 0)
                {
                    throw new HttpError(408, "request body took longer than " + maxBodyNanos / 1_000_000 + " ms");
                }
            }
            return out.toByteArray();
        }
        catch (final IOException ex)
        {
            // the idle timeout, or a client gone: either way the body did not arrive
            throw new HttpError(408, "request body did not arrive: " + ex);
        }
        finally
        {
            bodySlots.release();
        }
    }

    private static void json(final Response response, final Callback callback, final int status, final Object body)
        throws IOException
    {
        send(response, callback, status, "application/json", JSON.writeValueAsBytes(body));
    }

    private static void error(final Response response, final Callback callback, final int status, final String message)
    {
        // an error answer may leave the request body unread: the client must not reuse this connection
        response.getHeaders().put(HttpHeader.CONNECTION, "close");
        try
        {
            json(response, callback, status, new ServiceInfo.Error(String.valueOf(message)));
        }
        catch (final IOException ex)
        {
            callback.failed(ex);
        }
    }

    private static void send(final Response response, final Callback callback, final int status, final String type,
        final byte[] bytes)
    {
        response.setStatus(status);
        response.getHeaders().put(HttpHeader.CONTENT_TYPE, type);
        response.getHeaders().put(HttpHeader.CONTENT_LENGTH, bytes.length);
        response.write(true, ByteBuffer.wrap(bytes), callback);
    }
}
