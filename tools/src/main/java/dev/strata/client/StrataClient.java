package dev.strata.client;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * A Java client of an OpenAI-compatible server ({@code strata serve}, or any other): models, completions and chat
 * completions, blocking or streamed, on the JDK's HTTP client. Thread-safe.
 * <pre>{@code
 * StrataClient client = StrataClient.builder("http://127.0.0.1:8080/v1").apiKey(key).build();
 * Reply r = client.chat(ChatRequest.of("tinyllama", List.of(Message.user("Hi"))).maxTokens(64));
 * client.chatStream(request, delta -> System.out.print(delta));
 * }</pre>
 */
public final class StrataClient
{
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A chat message. */
    public record Message(String role, String content)
    {
        public static Message system(final String content)
        {
            return new Message("system", content);
        }

        public static Message user(final String content)
        {
            return new Message("user", content);
        }

        public static Message assistant(final String content)
        {
            return new Message("assistant", content);
        }
    }

    /**
     * A reply: its text, why it ended, token counts and the model version that served it.
     *
     * @param finishReason {@code stop} or {@code length}.
     */
    public record Reply(String text, String finishReason, int promptTokens, int completionTokens, String model)
    {
    }

    /** An error answered by the server: its HTTP status and OpenAI-style error fields. */
    public static final class ApiException extends RuntimeException
    {
        private final int status;
        private final String type;
        private final String code;

        ApiException(final int status, final String type, final String code, final String message)
        {
            super(status + " " + (type == null ? "" : type + ": ") + message);
            this.status = status;
            this.type = type;
            this.code = code;
        }

        public int status()
        {
            return status;
        }

        public String type()
        {
            return type;
        }

        public String code()
        {
            return code;
        }
    }

    /** Settings of a request; defaults as the OpenAI API's. */
    public static final class Options
    {
        Integer maxTokens;
        Double temperature;
        Double topP;
        Long seed;
        List<String> stop;

        public Options maxTokens(final int maxTokens)
        {
            this.maxTokens = maxTokens;
            return this;
        }

        public Options temperature(final double temperature)
        {
            this.temperature = temperature;
            return this;
        }

        public Options topP(final double topP)
        {
            this.topP = topP;
            return this;
        }

        public Options seed(final long seed)
        {
            this.seed = seed;
            return this;
        }

        public Options stop(final List<String> stop)
        {
            this.stop = List.copyOf(stop);
            return this;
        }

        void into(final ObjectNode body)
        {
            if (maxTokens != null)
            {
                body.put("max_tokens", maxTokens);
            }
            if (temperature != null)
            {
                body.put("temperature", temperature);
            }
            if (topP != null)
            {
                body.put("top_p", topP);
            }
            if (seed != null)
            {
                body.put("seed", seed);
            }
            if (stop != null)
            {
                final ArrayNode a = body.putArray("stop");
                stop.forEach(a::add);
            }
        }
    }

    /** A handle on a streamed reply in progress: {@link #cancel()} closes the connection, which the server takes as a cancellation. */
    public static final class Streaming
    {
        private final AtomicBoolean cancelled = new AtomicBoolean();
        private volatile InputStream body;

        public void cancel()
        {
            cancelled.set(true);
            final InputStream b = body;
            if (b != null)
            {
                try
                {
                    b.close();
                }
                catch (final IOException ignored)
                {
                    // closing is all we want
                }
            }
        }

        public boolean cancelled()
        {
            return cancelled.get();
        }
    }

    /** Builds a client. */
    public static final class Builder
    {
        private final String baseUrl;
        private String apiKey;
        private Duration timeout = Duration.ofMinutes(10);

        private Builder(final String baseUrl)
        {
            this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
        }

        public Builder apiKey(final String apiKey)
        {
            this.apiKey = apiKey;
            return this;
        }

        public Builder timeout(final Duration timeout)
        {
            this.timeout = Objects.requireNonNull(timeout);
            return this;
        }

        public StrataClient build()
        {
            return new StrataClient(this);
        }
    }

    private final String baseUrl;
    private final String apiKey;
    private final Duration timeout;
    private final HttpClient http;

    private StrataClient(final Builder b)
    {
        this.baseUrl = b.baseUrl;
        this.apiKey = b.apiKey;
        this.timeout = b.timeout;
        this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    /** @param baseUrl the API's base, e.g. {@code http://127.0.0.1:8080/v1}. */
    public static Builder builder(final String baseUrl)
    {
        return new Builder(baseUrl);
    }

    /** The ids of the served models. */
    public List<String> models()
    {
        final JsonNode r = call(authorized(HttpRequest.newBuilder(uri("/models")).GET()));
        final List<String> ids = new ArrayList<>();
        r.path("data").forEach(m -> ids.add(m.path("id").asText()));
        return ids;
    }

    /** A completion of {@code prompt}. */
    public Reply complete(final String model, final String prompt, final Options options)
    {
        final ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", prompt);
        options.into(body);
        final JsonNode r = call(post("/completions", body));
        final JsonNode choice = r.path("choices").path(0);
        return new Reply(choice.path("text").asText(), choice.path("finish_reason").asText(null),
            r.path("usage").path("prompt_tokens").asInt(), r.path("usage").path("completion_tokens").asInt(),
            r.path("model").asText());
    }

    /** The assistant's reply to {@code messages}. */
    public Reply chat(final String model, final List<Message> messages, final Options options)
    {
        final JsonNode r = call(post("/chat/completions", chatBody(model, messages, options, false)));
        final JsonNode choice = r.path("choices").path(0);
        return new Reply(choice.path("message").path("content").asText(), choice.path("finish_reason").asText(null),
            r.path("usage").path("prompt_tokens").asInt(), r.path("usage").path("completion_tokens").asInt(),
            r.path("model").asText());
    }

    /**
     * Streams the assistant's reply: {@code onText} sees each piece of text as it arrives (on the calling thread);
     * returns the whole reply, or what arrived before {@link Streaming#cancel()}.
     */
    public Reply chatStream(final String model, final List<Message> messages, final Options options,
        final Consumer<String> onText, final Streaming streaming)
    {
        final HttpResponse<InputStream> response;
        try
        {
            response = http.send(post("/chat/completions", chatBody(model, messages, options, true)).build(),
                HttpResponse.BodyHandlers.ofInputStream());
        }
        catch (final IOException e)
        {
            throw new java.io.UncheckedIOException("cannot reach " + baseUrl + ": " + e.getMessage(), e);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        if (response.statusCode() != 200)
        {
            try (InputStream in = response.body())
            {
                throw error(response.statusCode(), new String(in.readAllBytes(), StandardCharsets.UTF_8));
            }
            catch (final IOException e)
            {
                throw new ApiException(response.statusCode(), null, null, e.getMessage());
            }
        }
        streaming.body = response.body();
        final StringBuilder text = new StringBuilder();
        String finish = null;
        String served = model;
        int promptTokens = 0;
        int completionTokens = 0;
        try (Stream<String> lines = new java.io.BufferedReader(new java.io.InputStreamReader(response.body(),
            StandardCharsets.UTF_8)).lines())
        {
            final Iterator<String> it = lines.iterator();
            while (it.hasNext())
            {
                final String line = it.next();
                if (!line.startsWith("data: "))
                {
                    continue;
                }
                final String data = line.substring(6);
                if (data.equals("[DONE]"))
                {
                    break;
                }
                final JsonNode n = JSON.readTree(data);
                if (n.has("error"))
                {
                    throw new ApiException(500, n.path("error").path("type").asText(null), null,
                        n.path("error").path("message").asText());
                }
                served = n.path("model").asText(served);
                final JsonNode choice = n.path("choices").path(0);
                final String delta = choice.path("delta").path("content").asText("");
                if (!delta.isEmpty())
                {
                    text.append(delta);
                    onText.accept(delta);
                }
                if (choice.path("finish_reason").isTextual())
                {
                    finish = choice.get("finish_reason").asText();
                }
                if (n.path("usage").isObject())
                {
                    promptTokens = n.get("usage").path("prompt_tokens").asInt();
                    completionTokens = n.get("usage").path("completion_tokens").asInt();
                }
            }
        }
        catch (final IOException | java.io.UncheckedIOException e)
        {
            if (!streaming.cancelled())
            {
                throw new IllegalStateException("stream broken: " + e.getMessage(), e);
            }
        }
        return new Reply(text.toString(), streaming.cancelled() ? "cancelled" : finish, promptTokens,
            completionTokens, served);
    }

    private ObjectNode chatBody(final String model, final List<Message> messages, final Options options,
        final boolean stream)
    {
        final ObjectNode body = JSON.createObjectNode().put("model", model).put("stream", stream);
        final ArrayNode m = body.putArray("messages");
        messages.forEach(x -> m.addObject().put("role", x.role()).put("content", x.content()));
        options.into(body);
        if (stream)
        {
            body.putObject("stream_options").put("include_usage", true);
        }
        return body;
    }

    private URI uri(final String path)
    {
        return URI.create(baseUrl + path);
    }

    private HttpRequest.Builder post(final String path, final ObjectNode body)
    {
        return authorized(HttpRequest.newBuilder(uri(path)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body.toString())));
    }

    private HttpRequest.Builder authorized(final HttpRequest.Builder b)
    {
        if (apiKey != null)
        {
            b.header("Authorization", "Bearer " + apiKey);
        }
        return b;
    }

    private JsonNode call(final HttpRequest.Builder b)
    {
        b.timeout(timeout);
        final HttpResponse<String> r;
        try
        {
            r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        }
        catch (final IOException e)
        {
            throw new java.io.UncheckedIOException("cannot reach " + baseUrl + ": " + e.getMessage(), e);
        }
        catch (final InterruptedException e)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        if (r.statusCode() != 200)
        {
            throw error(r.statusCode(), r.body());
        }
        try
        {
            return JSON.readTree(r.body());
        }
        catch (final IOException e)
        {
            throw new ApiException(r.statusCode(), null, null, "not JSON: " + r.body());
        }
    }

    private static ApiException error(final int status, final String body)
    {
        try
        {
            final JsonNode e = JSON.readTree(body).path("error");
            return new ApiException(status, e.path("type").asText(null), e.path("code").asText(null),
                e.path("message").asText(body));
        }
        catch (final IOException notJson)
        {
            return new ApiException(status, null, null, body);
        }
    }
}
