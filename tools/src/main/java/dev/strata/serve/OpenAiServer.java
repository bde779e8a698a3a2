package dev.strata.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.GenerationService;
import dev.strata.compute.engine.RequestHandle;
import dev.strata.compute.engine.FinishReason;
import dev.strata.compute.engine.GenerationListener;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.compute.tokenizer.Tokenizer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.thread.QueuedThreadPool;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The OpenAI-compatible HTTP API (Jetty 12), over the engines of a {@link ModelCatalog}:
 * <pre>
 * GET  /health                 liveness and the served models (open)
 * GET  /metrics                Prometheus text (open)
 * GET  /v1/models              the served model versions
 * POST /v1/completions         prompt (text or token ids) → text; stream with server-sent events
 * POST /v1/chat/completions    messages, rendered with the model's chat template → assistant message
 * </pre>
 * Errors are OpenAI-style: {@code {"error": {"message", "type", "param", "code"}}} with 400 (bad request), 401
 * (API key), 404 (unknown model or path), 405, 413 (body too large), 429 (queue full), 500, 503 (shutting down).
 * A streamed request whose client goes away is cancelled, which frees its KV blocks.
 */
public final class OpenAiServer implements AutoCloseable
{
    private static final Logger LOG = Logger.getLogger(OpenAiServer.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final byte[] DONE = "data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8);

    /** Settings of the API server; {@link #conclude()} validates them. */
    public static final class Context
    {
        private String host = "127.0.0.1";
        private int port = 8080;
        private String apiKey;
        private ModelCatalog catalog;
        private PrometheusMeterRegistry registry;
        private int maxBodyBytes = 8 << 20;
        private int maxWaiting = 256;
        private int maxThreads = 256;
        private ClusterRouter cluster;

        public Context host(final String host)
        {
            this.host = host;
            return this;
        }

        /** 0 picks a free port. */
        public Context port(final int port)
        {
            this.port = port;
            return this;
        }

        /** Required as {@code Authorization: Bearer KEY} on the API when set. */
        public Context apiKey(final String apiKey)
        {
            this.apiKey = apiKey;
            return this;
        }

        public Context catalog(final ModelCatalog catalog)
        {
            this.catalog = catalog;
            return this;
        }

        /** The process's registry (default: a new one). */
        public Context registry(final PrometheusMeterRegistry registry)
        {
            this.registry = registry;
            return this;
        }

        public Context maxBodyBytes(final int maxBodyBytes)
        {
            this.maxBodyBytes = maxBodyBytes;
            return this;
        }

        /** Requests waiting in an engine's queue beyond which new ones get 429. */
        public Context maxWaiting(final int maxWaiting)
        {
            this.maxWaiting = maxWaiting;
            return this;
        }

        /** HTTP threads: a request holds one while it runs, so this bounds concurrent requests. */
        public Context maxThreads(final int maxThreads)
        {
            this.maxThreads = maxThreads;
            return this;
        }

        /** The router of a split deployment: {@code GET /v1/nodes} lists its nodes, {@code POST} switches roles. */
        public Context cluster(final ClusterRouter cluster)
        {
            this.cluster = cluster;
            return this;
        }

        public Context conclude()
        {
            Objects.requireNonNull(catalog, "catalog");
            if (port < 0 || port > 65535)
            {
                throw new IllegalArgumentException("invalid port=" + port);
            }
            if (maxBodyBytes < 1024 || maxWaiting < 1 || maxThreads < 8)
            {
                throw new IllegalArgumentException("invalid maxBodyBytes=" + maxBodyBytes + " maxWaiting=" +
                    maxWaiting + " maxThreads=" + maxThreads);
            }
            if (apiKey != null && apiKey.isBlank())
            {
                throw new IllegalArgumentException("the API key must not be blank");
            }
            if (registry == null)
            {
                registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
            }
            return this;
        }
    }

    private final Context ctx;
    private final byte[] apiKey;
    private final Server server;
    private final ServerConnector connector;
    private final ServeMetrics metrics;
    private volatile boolean closing;

    private OpenAiServer(final Context ctx) throws Exception
    {
        this.ctx = ctx;
        this.apiKey = ctx.apiKey == null ? null : ctx.apiKey.getBytes(StandardCharsets.UTF_8);
        this.metrics = new ServeMetrics(ctx.registry);
        for (final ServedModel m : ctx.catalog.models())
        {
            metrics.register(m);
        }
        final QueuedThreadPool threads = new QueuedThreadPool(ctx.maxThreads, 4);
        threads.setName("strata-api");
        threads.setDaemon(true);
        server = new Server(threads);
        connector = new ServerConnector(server);
        connector.setHost(ctx.host);
        connector.setPort(ctx.port);
        server.addConnector(connector);
        server.setHandler(new Handler.Abstract()
        {
            @Override
            public boolean handle(final Request request, final Response response, final Callback callback)
            {
                OpenAiServer.this.handle(request, response, callback);
                return true;
            }
        });
        try
        {
            server.start();
        }
        catch (final Exception e)
        {
            server.stop();
            throw e;
        }
    }

    public static OpenAiServer launch(final Context ctx) throws Exception
    {
        return new OpenAiServer(ctx.conclude());
    }

    public int port()
    {
        return connector.getLocalPort();
    }

    public PrometheusMeterRegistry registry()
    {
        return ctx.registry;
    }

    /** Stops taking requests (503), then stops the HTTP server; requests in flight are cancelled by their engine. */
    @Override
    public void close() throws Exception
    {
        closing = true;
        server.stop();
    }

    private void handle(final Request request, final Response response, final Callback callback)
    {
        try
        {
            route(request, response, callback);
        }
        catch (final ApiError e)
        {
            error(response, callback, e);
        }
        catch (final Exception e)
        {
            LOG.log(Level.WARNING, "request failed", e);
            error(response, callback, new ApiError(500, "server_error", null, null, e.getClass().getSimpleName() +
                ": " + e.getMessage()));
        }
    }

    private void route(final Request request, final Response response, final Callback callback) throws Exception
    {
        final String method = request.getMethod();
        final String path = request.getHttpURI().getPath();
        if (path.equals("/health"))
        {
            final ObjectNode body = JSON.createObjectNode().put("status", closing ? "closing" : "ok");
            final ArrayNode models = body.putArray("models");
            ctx.catalog.models().forEach(m -> models.add(m.id()));
            send(response, callback, closing ? 503 : 200, body);
            return;
        }
        if (path.equals("/metrics"))
        {
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
            Content.Sink.write(response, true, ctx.registry.scrape(), callback);
            return;
        }
        if (!path.startsWith("/v1/"))
        {
            throw new ApiError(404, "invalid_request_error", null, "not_found", "no such path: " + path);
        }
        authorize(request);
        if (closing)
        {
            throw new ApiError(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        switch (path)
        {
            case "/v1/models" ->
            {
                requireMethod(method, "GET");
                final ObjectNode body = JSON.createObjectNode().put("object", "list");
                final ArrayNode data = body.putArray("data");
                for (final ServedModel m : ctx.catalog.models())
                {
                    data.addObject().put("id", m.id()).put("object", "model").put("created", m.created())
                        .put("owned_by", "strata").put("max_model_len", m.engine().maxContext());
                }
                send(response, callback, 200, body);
            }
            case "/v1/completions" ->
            {
                requireMethod(method, "POST");
                generate(request, response, callback, false);
            }
            case "/v1/chat/completions" ->
            {
                requireMethod(method, "POST");
                generate(request, response, callback, true);
            }
            case "/v1/nodes" ->
            {
                if (ctx.cluster == null)
                {
                    throw new ApiError(404, "invalid_request_error", null, "not_found", "this server has no nodes: " +
                        "it runs its engine in-process (strata serve --prefill N --decode M starts nodes)");
                }
                if (method.equals("POST"))
                {
                    final ObjectNode body = readBody(request);
                    if ( !body.path("node").isTextual() || !body.path("role").isTextual())
                    {
                        throw ApiError.invalid(null, "expected {\"node\": NAME, \"role\": prefill|decode|both}");
                    }
                    try
                    {
                        ctx.cluster.setRole(body.get("node").asText(),
                            dev.strata.compute.cluster.Msg.Role.parse(body.get("role").asText())).join();
                    }
                    catch (final IllegalArgumentException | java.util.concurrent.CompletionException e)
                    {
                        throw ApiError.invalid("node", (e.getCause() != null ? e.getCause() : e).getMessage());
                    }
                }
                else
                {
                    requireMethod(method, "GET");
                }
                send(response, callback, 200, JSON.valueToTree(ctx.cluster.view()));
            }
            default -> throw new ApiError(404, "invalid_request_error", null, "not_found", "no such path: " + path);
        }
    }

    private void authorize(final Request request)
    {
        if (apiKey == null)
        {
            return;
        }
        final String header = request.getHeaders().get(HttpHeader.AUTHORIZATION);
        final byte[] given = header != null && header.startsWith("Bearer ")
            ? header.substring(7).trim().getBytes(StandardCharsets.UTF_8) : new byte[0];
        if (!MessageDigest.isEqual(apiKey, given))
        {
            throw new ApiError(401, "invalid_request_error", null, "invalid_api_key",
                header == null ? "missing API key: send Authorization: Bearer KEY" : "incorrect API key");
        }
    }

    private static void requireMethod(final String method, final String allowed)
    {
        if (!method.equals(allowed))
        {
            throw new ApiError(405, "invalid_request_error", null, "method_not_allowed", method + " is not allowed " +
                "here; use " + allowed);
        }
    }

    private ObjectNode readBody(final Request request) throws IOException
    {
        final long declared = request.getLength();
        if (declared > ctx.maxBodyBytes)
        {
            throw new ApiError(413, "invalid_request_error", null, "request_too_large", "request body of " +
                declared + " bytes exceeds the limit of " + ctx.maxBodyBytes);
        }
        final byte[] bytes;
        try (InputStream in = Content.Source.asInputStream(request))
        {
            bytes = in.readNBytes(ctx.maxBodyBytes + 1);
        }
        if (bytes.length > ctx.maxBodyBytes)
        {
            throw new ApiError(413, "invalid_request_error", null, "request_too_large", "request body exceeds the " +
                "limit of " + ctx.maxBodyBytes + " bytes");
        }
        final JsonNode node;
        try
        {
            node = JSON.readTree(bytes);
        }
        catch (final com.fasterxml.jackson.core.JsonProcessingException e)
        {
            throw ApiError.invalid(null, "the body is not valid JSON: " + e.getOriginalMessage());
        }
        if (node == null || !node.isObject())
        {
            throw ApiError.invalid(null, "the body must be a JSON object");
        }
        return (ObjectNode)node;
    }

    private void generate(final Request request, final Response response, final Callback callback, final boolean chat)
        throws Exception
    {
        final ParsedRequest p = ParsedRequest.parse(readBody(request), chat);
        try (ModelCatalog.Lease lease = ctx.catalog.acquire(p.model(),
            request.getHeaders().get("X-Strata-Version"), p.user()))
        {
            final ServedModel model = lease.model();
            final GenerationService engine = model.engine();
            final Tokenizer tokenizer = model.tokenizer();
            final int[] prompt;
            if (chat)
            {
                prompt = tokenizer.encode(model.template().render(p.messages(), true), false, true);
            }
            else if (p.promptTokens() != null)
            {
                prompt = p.promptTokens();
                for (final int t : prompt)
                {
                    if (t < 0 || t >= engine.vocabSize())
                    {
                        throw ApiError.invalid("prompt", "token id " + t + " outside the vocabulary [0, " +
                            engine.vocabSize() + ")");
                    }
                }
            }
            else
            {
                prompt = tokenizer.encode(p.promptText(), true, false);
            }
            if (prompt.length == 0)
            {
                throw ApiError.invalid(chat ? "messages" : "prompt", "the prompt is empty");
            }
            final int context = engine.maxContext();
            if (prompt.length >= context)
            {
                throw ApiError.invalid(chat ? "messages" : "prompt", "context_length_exceeded", "This model's " +
                    "maximum context length is " + context + " tokens; the prompt has " + prompt.length + " tokens");
            }
            final int maxTokens = p.maxTokens() < 0 ? context - prompt.length : p.maxTokens();
            if ((long)prompt.length + maxTokens > context)
            {
                throw ApiError.invalid(chat ? "max_completion_tokens" : "max_tokens", "context_length_exceeded",
                    "This model's maximum context length is " + context + " tokens; the prompt has " + prompt.length +
                        " tokens and max_tokens asks for " + maxTokens + " more");
            }
            if (engine.stats().waiting() >= ctx.maxWaiting)
            {
                throw new ApiError(429, "rate_limit_error", null, "queue_full", "the server is busy: " +
                    engine.stats().waiting() + " requests are waiting; retry later");
            }
            final GenerationRequest g;
            try
            {
                g = new GenerationRequest(prompt, p.sampling(ThreadLocalRandom.current().nextLong()), maxTokens, null,
                    p.stop(), p.topLogprobs(), p.presencePenalty(), p.frequencyPenalty(), p.ignoreEos());
            }
            catch (final IllegalArgumentException e)
            {
                throw ApiError.invalid(null, e.getMessage());
            }
            final BlockingQueue<Object> events = new LinkedBlockingQueue<>();
            final RequestHandle handle;
            try
            {
                handle = engine.submit(g, new GenerationListener()
                {
                    @Override
                    public void onToken(final TokenEvent event)
                    {
                        if (p.stream() || p.topLogprobs() >= 0)
                        {
                            events.add(event);
                        }
                    }

                    @Override
                    public void onComplete(final Completion completion)
                    {
                        events.add(completion);
                    }
                });
            }
            catch (final IllegalArgumentException e)
            {
                throw ApiError.invalid(null, e.getMessage());
            }
            catch (final IllegalStateException e)
            {
                throw new ApiError(503, "server_error", null, "shutting_down", e.getMessage());
            }
            final String id = (chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
            final long created = System.currentTimeMillis() / 1000;
            if (p.stream())
            {
                stream(response, callback, p, model, handle, events, id, created);
            }
            else
            {
                final Completion c;
                try
                {
                    c = handle.completion().get();
                }
                catch (final InterruptedException e)
                {
                    handle.cancel();
                    Thread.currentThread().interrupt();
                    throw e;
                }
                catch (final ExecutionException e)
                {
                    throw new IllegalStateException(e.getCause());
                }
                metrics.completed(model, c);
                if (c.reason() == FinishReason.ERROR || c.reason() == FinishReason.CANCELLED)
                {
                    throw new ApiError(c.reason() == FinishReason.ERROR ? 500 : 503, "server_error", null, null,
                        "generation " + c.reason().name().toLowerCase() + ": " + c.error());
                }
                final ObjectNode body = JSON.createObjectNode().put("id", id)
                    .put("object", chat ? "chat.completion" : "text_completion").put("created", created)
                    .put("model", model.id());
                final ObjectNode choice = body.putArray("choices").addObject().put("index", 0);
                if (chat)
                {
                    choice.putObject("message").put("role", "assistant").put("content", c.text());
                }
                else
                {
                    choice.put("text", c.text());
                }
                final java.util.List<TokenEvent> tokens = p.topLogprobs() >= 0 ? tokenEvents(events) : null;
                if (tokens != null)
                {
                    choice.set("logprobs", OpenAiJson.logprobs(tokens, tokenizer, chat));
                }
                else
                {
                    choice.putNull("logprobs");
                }
                choice.put("finish_reason", OpenAiJson.finishReason(c));
                OpenAiJson.usage(body.putObject("usage"), c);
                send(response, callback, 200, body);
            }
        }
    }

    /** The token events a non-streamed request with log probabilities collected (see {@link #generate}). */
    private static java.util.List<TokenEvent> tokenEvents(final BlockingQueue<Object> events)
    {
        final java.util.List<TokenEvent> list = new java.util.ArrayList<>();
        for (final Object o : events)
        {
            if (o instanceof TokenEvent t)
            {
                list.add(t);
            }
        }
        return list;
    }

    private void stream(final Response response, final Callback callback, final ParsedRequest p,
        final ServedModel model, final RequestHandle handle, final BlockingQueue<Object> events, final String id,
        final long created) throws Exception
    {
        response.setStatus(200);
        response.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        response.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-cache");
        final Tokenizer tokenizer = model.tokenizer();
        final boolean chat = p.chat();
        boolean ended = false;
        try (OutputStream out = Content.Sink.asOutputStream(response))
        {
            if (chat)
            {
                final ObjectNode first = OpenAiJson.chunk(id, created, model, true);
                first.withArray("choices").addObject().put("index", 0).putNull("finish_reason").putNull("logprobs")
                    .putObject("delta").put("role", "assistant").put("content", "");
                event(out, first);
            }
            while (true)
            {
                final Object e = events.take();
                if (e instanceof TokenEvent t)
                {
                    if (t.text().isEmpty() && p.topLogprobs() < 0)
                    {
                        continue;
                    }
                    final ObjectNode c = OpenAiJson.chunk(id, created, model, chat);
                    final ObjectNode choice = c.withArray("choices").addObject().put("index", 0);
                    if (chat)
                    {
                        choice.putObject("delta").put("content", t.text());
                    }
                    else
                    {
                        choice.put("text", t.text());
                    }
                    if (p.topLogprobs() >= 0)
                    {
                        choice.set("logprobs", OpenAiJson.logprobs(java.util.List.of(t), tokenizer, chat));
                    }
                    else
                    {
                        choice.putNull("logprobs");
                    }
                    choice.putNull("finish_reason");
                    event(out, c);
                }
                else if (e instanceof Completion done)
                {
                    ended = true;
                    metrics.completed(model, done);
                    if (done.reason() == FinishReason.ERROR || done.reason() == FinishReason.CANCELLED)
                    {
                        final ObjectNode err = JSON.createObjectNode();
                        err.putObject("error").put("message", "generation " + done.reason().name()
                            .toLowerCase() + ": " + done.error()).put("type", "server_error").putNull("param")
                            .putNull("code");
                        event(out, err);
                    }
                    else
                    {
                        final ObjectNode c = OpenAiJson.chunk(id, created, model, chat);
                        final ObjectNode choice = c.withArray("choices").addObject().put("index", 0);
                        if (chat)
                        {
                            choice.putObject("delta");
                        }
                        else
                        {
                            choice.put("text", "");
                        }
                        choice.putNull("logprobs").put("finish_reason", OpenAiJson.finishReason(done));
                        if (p.includeUsage())
                        {
                            c.putNull("usage");
                        }
                        event(out, c);
                        if (p.includeUsage())
                        {
                            final ObjectNode u = OpenAiJson.chunk(id, created, model, chat);
                            u.putArray("choices");
                            OpenAiJson.usage(u.putObject("usage"), done);
                            event(out, u);
                        }
                    }
                    out.write(DONE);
                    out.flush();
                    break;
                }
            }
            callback.succeeded();
        }
        catch (final IOException | InterruptedException e)
        {
            // the client went away (or the server is stopping): stop generating and free the KV blocks
            if (!ended)
            {
                handle.cancel();
                try
                {
                    metrics.completed(model, handle.completion().get(30, java.util.concurrent.TimeUnit.SECONDS));
                }
                catch (final Exception ignored)
                {
                    // the engine is closing: nothing to count
                }
            }
            callback.failed(e);
            if (e instanceof InterruptedException)
            {
                Thread.currentThread().interrupt();
            }
        }
    }


    private static void event(final OutputStream out, final JsonNode node) throws IOException
    {
        out.write(("data: " + JSON.writeValueAsString(node) + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }






    private static void send(final Response response, final Callback callback, final int status, final JsonNode body)
        throws IOException
    {
        response.setStatus(status);
        response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
        Content.Sink.write(response, true, JSON.writeValueAsString(body), callback);
    }

    private static void error(final Response response, final Callback callback, final ApiError e)
    {
        final ObjectNode body = JSON.createObjectNode();
        final ObjectNode err = body.putObject("error").put("message", e.getMessage()).put("type", e.type);
        if (e.param != null)
        {
            err.put("param", e.param);
        }
        else
        {
            err.putNull("param");
        }
        if (e.code != null)
        {
            err.put("code", e.code);
        }
        else
        {
            err.putNull("code");
        }
        try
        {
            if (response.isCommitted())
            {
                callback.failed(e);
                return;
            }
            send(response, callback, e.status, body);
        }
        catch (final IOException io)
        {
            callback.failed(io);
        }
    }
}
