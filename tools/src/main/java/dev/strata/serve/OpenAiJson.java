package dev.strata.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.FinishReason;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.compute.tokenizer.Tokenizer;

import java.nio.charset.StandardCharsets;

/** The OpenAI API's response objects: stream chunks, usage, finish reasons and log probabilities. */
final class OpenAiJson
{
    private static final ObjectMapper JSON = new ObjectMapper();

    private OpenAiJson()
    {
    }

    static ObjectNode chunk(final String id, final long created, final ServedModel model, final boolean chat)
    {
        return JSON.createObjectNode().put("id", id).put("object", chat ? "chat.completion.chunk" : "text_completion")
            .put("created", created).put("model", model.id());
    }

    static String finishReason(final Completion c)
    {
        return c.reason() == FinishReason.LENGTH ? "length" : "stop";
    }

    static void usage(final ObjectNode u, final Completion c)
    {
        u.put("prompt_tokens", c.promptTokens()).put("completion_tokens", c.completionTokens())
            .put("total_tokens", c.promptTokens() + c.completionTokens());
        u.putObject("prompt_tokens_details").put("cached_tokens", c.cachedTokens());
    }

    /** OpenAI's logprobs objects: chat's {@code content} list, or the completions API's parallel arrays. */
    static ObjectNode logprobs(final java.util.List<TokenEvent> tokens, final Tokenizer tokenizer,
        final boolean chat)
    {
        final ObjectNode lp = JSON.createObjectNode();
        if (chat)
        {
            final ArrayNode content = lp.putArray("content");
            for (final TokenEvent t : tokens)
            {
                final ObjectNode e = content.addObject();
                piece(e, tokenizer, t.token()).put("logprob", t.logprob());
                final ArrayNode top = e.putArray("top_logprobs");
                for (int i = 0; i < t.topTokens().length; i++)
                {
                    piece(top.addObject(), tokenizer, t.topTokens()[i]).put("logprob", t.topLogprobs()[i]);
                }
            }
        }
        else
        {
            final ArrayNode toks = lp.putArray("tokens");
            final ArrayNode lps = lp.putArray("token_logprobs");
            final ArrayNode tops = lp.putArray("top_logprobs");
            final ArrayNode offsets = lp.putArray("text_offset");
            int offset = 0;
            for (final TokenEvent t : tokens)
            {
                toks.add(pieceText(tokenizer, t.token()));
                lps.add(t.logprob());
                final ObjectNode top = tops.addObject();
                for (int i = 0; i < t.topTokens().length; i++)
                {
                    top.put(pieceText(tokenizer, t.topTokens()[i]), t.topLogprobs()[i]);
                }
                offsets.add(offset);
                offset += t.text().length();
            }
        }
        return lp;
    }

    static ObjectNode piece(final ObjectNode node, final Tokenizer tokenizer, final int token)
    {
        final byte[] bytes = tokenizer.tokenBytes(token);
        node.put("token", new String(bytes, StandardCharsets.UTF_8));
        final ArrayNode b = node.putArray("bytes");
        for (final byte x : bytes)
        {
            b.add(x & 0xFF);
        }
        return node;
    }

    static String pieceText(final Tokenizer tokenizer, final int token)
    {
        return new String(tokenizer.tokenBytes(token), StandardCharsets.UTF_8);
    }
}
