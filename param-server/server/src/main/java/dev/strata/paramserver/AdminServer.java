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
 * Answers are the records of {@link ServiceInfo}. Errors are {@code {"error": "..."}} with a status chosen by the
 * exception's type: 400 (bad input: {@link IllegalArgumentException}, a registry {@code INVALID}), 401 (token),
 * 404 (a registry {@code NOT_FOUND}), 409 (a registry {@code CONFLICT}), 413 (too large), 500 (anything else). Model names are validated by the registry (no path traversal, at most 64 characters).
 */
final class AdminServer implements AutoCloseable
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int MAX_MANIFEST_BYTES = 64 << 20;
    private static final int MAX_ID_LIST_BYTES = 16 << 20;

    private final ParamService service;
    private final byte[] token;
    private final boolean protectReads;
    private final Server server;
    private final ServerConnector connector;
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

    AdminServer(final ParamService service, final int port, final String token, final boolean protectReads)
        throws Exception
    {
        this.service = service;
        this.token = token == null ? null : token.getBytes(StandardCharsets.UTF_8);
        this.protectReads = protectReads;
        final QueuedThreadPool threads = new QueuedThreadPool(32, 2);
        threads.setName("strata-admin");
        threads.setDaemon(true);
        server = new Server(threads);
        connector = new ServerConnector(server);
        connector.setPort(port);
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
            final List<ServiceInfo.ModelSummary> list = new ArrayList<>();
            for (final String name : service.models())
            {
                list.add(new ServiceInfo.ModelSummary(name, service.versions(name).size(), labelled(name, "stable"),
                    labelled(name, "canary")));
            }
            json(response, callback, 200, list);
            return;
        }
        if (p.length < 5)
        {
            throw new HttpError(404, "no such endpoint");
        }
        final String model = ModelRegistry.checkName(p[3]);
        switch (p[4])
        {
            case "uploads" ->
            {
                requireToken(request);
                requireMethod(method, "POST");
                final Map.Entry<ModelRegistry.Version, Boolean> v = service.beginUpload(model,
                    query.getValue("manifest"));
                json(response, callback, v.getValue() ? 200 : 201,
                    new ServiceInfo.UploadBegun(v.getKey().number(), v.getValue()));
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
                requireToken(request);
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

    private void requireToken(final Request request)
    {
        if (token == null)
        {
            return;
        }
        final String auth = request.getHeaders().get(HttpHeader.AUTHORIZATION);
        final byte[] given = auth != null && auth.startsWith("Bearer ") ?
            auth.substring(7).getBytes(StandardCharsets.UTF_8) : new byte[0];
        if (!MessageDigest.isEqual(token, given))
        {
            throw new HttpError(401, auth == null ? "this operation needs a token (Authorization: Bearer ...)" :
                "wrong token");
        }
    }

    private void requireRead(final Request request)
    {
        if (protectReads)
        {
            requireToken(request);
        }
    }

    private static byte[] body(final Request request, final int limit) throws IOException
    {
        final long declared = request.getLength();
        if (declared > limit)
        {
            throw new HttpError(413, "request body of " + declared + " bytes is over the limit of " + limit);
        }
        try (InputStream in = Content.Source.asInputStream(request))
        {
            final byte[] bytes = in.readNBytes(limit + 1);
            if (bytes.length > limit)
            {
                throw new HttpError(413, "request body is over the limit of " + limit + " bytes");
            }
            return bytes;
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
