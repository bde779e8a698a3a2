package dev.strata.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.chat.ChatMessage;
import dev.strata.compute.sampling.SamplerConfig;

import java.util.ArrayList;
import java.util.List;

/**
 * The fields of a {@code /v1/completions} or {@code /v1/chat/completions} body, type-checked, with OpenAI's
 * defaults. Every wrong field is a 400 that names it.
 *
 * @param chat           whether this is a chat request ({@code messages}) or a completion ({@code prompt}).
 * @param model          the requested model.
 * @param promptText     the prompt text (completions), or null.
 * @param promptTokens   the prompt as token ids (completions), or null.
 * @param messages       the chat messages, or null.
 * @param maxTokens      most tokens to generate, or -1 for "what is left of the context" (chat without a limit).
 * @param topLogprobs    -1 for no log probabilities, else alternatives per token.
 */
record ParsedRequest(boolean chat, String model, String promptText, int[] promptTokens, List<ChatMessage> messages,
    int maxTokens, float temperature, float topP, int topK, float minP, float repetitionPenalty,
    float presencePenalty, float frequencyPenalty, Long seed, List<String> stop, int topLogprobs, boolean stream,
    boolean includeUsage, String user, boolean ignoreEos)
{
    static final int MAX_STOP = 4;

    static ParsedRequest parse(final ObjectNode body, final boolean chat)
    {
        final String model = string(body, "model", null);
        if (model == null)
        {
            throw ApiError.invalid("model", "you must provide a model parameter");
        }
        String promptText = null;
        int[] promptTokens = null;
        List<ChatMessage> messages = null;
        if (chat)
        {
            final JsonNode m = body.get("messages");
            if (m == null || !m.isArray() || m.isEmpty())
            {
                throw ApiError.invalid("messages", "messages must be a non-empty array of {role, content}");
            }
            messages = new ArrayList<>();
            for (int i = 0; i < m.size(); i++)
            {
                final JsonNode msg = m.get(i);
                final String param = "messages[" + i + "]";
                if (!msg.isObject() || !msg.path("role").isTextual())
                {
                    throw ApiError.invalid(param + ".role", "each message needs a string role");
                }
                final String role = msg.get("role").asText();
                if (!List.of("system", "developer", "user", "assistant", "tool").contains(role))
                {
                    throw ApiError.invalid(param + ".role", "unknown role '" + role + "'");
                }
                messages.add(new ChatMessage(role.equals("developer") ? "system" : role, content(msg.get("content"),
                    param + ".content")));
            }
        }
        else
        {
            final JsonNode p = body.get("prompt");
            if (p == null || p.isNull())
            {
                throw ApiError.invalid("prompt", "you must provide a prompt");
            }
            if (p.isTextual())
            {
                promptText = p.asText();
            }
            else if (p.isArray() && p.size() == 1 && p.get(0).isTextual())
            {
                promptText = p.get(0).asText();
            }
            else if (p.isArray() && !p.isEmpty() && allInts(p))
            {
                promptTokens = new int[p.size()];
                for (int i = 0; i < p.size(); i++)
                {
                    promptTokens[i] = p.get(i).asInt();
                }
            }
            else if (p.isArray() && p.size() > 1)
            {
                throw ApiError.invalid("prompt", "only one prompt per request is supported (n = 1)");
            }
            else
            {
                throw ApiError.invalid("prompt", "prompt must be a string or an array of token ids");
            }
        }
        int maxTokens = chat ? intField(body, "max_completion_tokens", -1) : -1;
        if (maxTokens < 0)
        {
            maxTokens = intField(body, "max_tokens", chat ? -1 : 16);
        }
        if (maxTokens == 0 || maxTokens < -1 || (maxTokens == -1 && (body.has("max_tokens") ||
            body.has("max_completion_tokens"))))
        {
            throw ApiError.invalid(body.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                "max_tokens must be at least 1");
        }
        final float temperature = number(body, "temperature", 1f, 0f, 2f);
        final float topP = number(body, "top_p", 1f, 0f, 1f);
        if (topP == 0f)
        {
            throw ApiError.invalid("top_p", "top_p must be in (0, 1]");
        }
        int topK = intField(body, "top_k", 0);
        if (topK < -1)
        {
            throw ApiError.invalid("top_k", "top_k must be -1 or 0 (off) or positive");
        }
        topK = Math.max(0, topK);
        final float minP = number(body, "min_p", 0f, 0f, 1f);
        final float repetitionPenalty = number(body, "repetition_penalty", 1f, 0.01f, 10f);
        final float presence = number(body, "presence_penalty", 0f, -2f, 2f);
        final float frequency = number(body, "frequency_penalty", 0f, -2f, 2f);
        final JsonNode seedNode = body.get("seed");
        Long seed = null;
        if (seedNode != null && !seedNode.isNull())
        {
            if (!seedNode.isIntegralNumber())
            {
                throw ApiError.invalid("seed", "seed must be an integer");
            }
            seed = seedNode.asLong();
        }
        final int n = intField(body, "n", 1);
        if (n != 1)
        {
            throw ApiError.invalid("n", "only n = 1 is supported");
        }
        final List<String> stop = new ArrayList<>();
        final JsonNode s = body.get("stop");
        if (s != null && !s.isNull())
        {
            if (s.isTextual())
            {
                stop.add(s.asText());
            }
            else if (s.isArray() && s.size() <= MAX_STOP)
            {
                for (final JsonNode e : s)
                {
                    if (!e.isTextual() || e.asText().isEmpty())
                    {
                        throw ApiError.invalid("stop", "stop must be a string or a list of up to 4 non-empty strings");
                    }
                    stop.add(e.asText());
                }
            }
            else
            {
                throw ApiError.invalid("stop", "stop must be a string or a list of up to 4 non-empty strings");
            }
            if (stop.stream().anyMatch(String::isEmpty))
            {
                throw ApiError.invalid("stop", "stop strings must not be empty");
            }
        }
        int topLogprobs = -1;
        if (chat)
        {
            if (bool(body, "logprobs", false))
            {
                topLogprobs = intField(body, "top_logprobs", 0);
                if (topLogprobs < 0 || topLogprobs > 20)
                {
                    throw ApiError.invalid("top_logprobs", "top_logprobs must be in [0, 20]");
                }
            }
            else if (body.hasNonNull("top_logprobs"))
            {
                throw ApiError.invalid("top_logprobs", "top_logprobs needs logprobs = true");
            }
        }
        else if (body.hasNonNull("logprobs"))
        {
            topLogprobs = intField(body, "logprobs", 0);
            if (topLogprobs < 0 || topLogprobs > 5)
            {
                throw ApiError.invalid("logprobs", "logprobs must be in [0, 5]");
            }
        }
        final boolean stream = bool(body, "stream", false);
        boolean includeUsage = false;
        final JsonNode so = body.get("stream_options");
        if (so != null && !so.isNull())
        {
            if (!so.isObject())
            {
                throw ApiError.invalid("stream_options", "stream_options must be an object");
            }
            if (!stream)
            {
                throw ApiError.invalid("stream_options", "stream_options is only allowed with stream = true");
            }
            includeUsage = so.path("include_usage").asBoolean(false);
        }
        final String user = string(body, "user", null);
        final boolean ignoreEos = bool(body, "ignore_eos", false);
        return new ParsedRequest(chat, model, promptText, promptTokens, messages, maxTokens, temperature, topP, topK,
            minP, repetitionPenalty, presence, frequency, seed, stop, topLogprobs, stream, includeUsage, user,
            ignoreEos);
    }

    /** The sampler settings: temperature 0 is greedy; without a seed, a fresh one per request. */
    SamplerConfig sampling(final long freshSeed)
    {
        return new SamplerConfig(temperature, topK, topP, minP, repetitionPenalty, SamplerConfig.DEFAULT_REPEAT_LAST_N,
            seed != null ? seed : freshSeed);
    }

    private static String content(final JsonNode c, final String param)
    {
        if (c == null || c.isNull())
        {
            return "";
        }
        if (c.isTextual())
        {
            return c.asText();
        }
        if (c.isArray())
        {
            final StringBuilder sb = new StringBuilder();
            for (final JsonNode part : c)
            {
                if (!part.path("type").asText().equals("text") || !part.path("text").isTextual())
                {
                    throw ApiError.invalid(param, "only text content parts are supported");
                }
                sb.append(part.get("text").asText());
            }
            return sb.toString();
        }
        throw ApiError.invalid(param, "content must be a string or an array of text parts");
    }

    private static boolean allInts(final JsonNode array)
    {
        for (final JsonNode e : array)
        {
            if (!e.isIntegralNumber() || !e.canConvertToInt())
            {
                return false;
            }
        }
        return true;
    }

    private static String string(final JsonNode body, final String field, final String fallback)
    {
        final JsonNode n = body.get(field);
        if (n == null || n.isNull())
        {
            return fallback;
        }
        if (!n.isTextual())
        {
            throw ApiError.invalid(field, field + " must be a string");
        }
        return n.asText();
    }

    private static int intField(final JsonNode body, final String field, final int fallback)
    {
        final JsonNode n = body.get(field);
        if (n == null || n.isNull())
        {
            return fallback;
        }
        if (!n.isIntegralNumber() || !n.canConvertToInt())
        {
            throw ApiError.invalid(field, field + " must be an integer");
        }
        return n.asInt();
    }

    private static float number(final JsonNode body, final String field, final float fallback, final float min,
        final float max)
    {
        final JsonNode n = body.get(field);
        if (n == null || n.isNull())
        {
            return fallback;
        }
        if (!n.isNumber())
        {
            throw ApiError.invalid(field, field + " must be a number");
        }
        final double v = n.asDouble();
        if (!(v >= min && v <= max))
        {
            throw ApiError.invalid(field, field + " must be in [" + min + ", " + max + "], got " + v);
        }
        return (float)v;
    }

    private static boolean bool(final JsonNode body, final String field, final boolean fallback)
    {
        final JsonNode n = body.get(field);
        if (n == null || n.isNull())
        {
            return fallback;
        }
        if (!n.isBoolean())
        {
            throw ApiError.invalid(field, field + " must be a boolean");
        }
        return n.asBoolean();
    }
}
