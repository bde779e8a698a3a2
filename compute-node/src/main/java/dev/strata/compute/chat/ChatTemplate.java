package dev.strata.compute.chat;

import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.interpret.TemplateSyntaxException;
import dev.strata.compute.gguf.GgufMetadata;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * A model's chat template: renders a conversation into the prompt text the model expects.
 * <p>
 * Templates are Jinja, as in Hugging Face {@code tokenizer_config.json} and GGUF {@code tokenizer.chat_template},
 * rendered with Jinjava set up like the Hugging Face environment (see {@code JinjaEnvironment}): {@code trim_blocks}
 * and {@code lstrip_blocks}, {@code raise_exception(msg)}, {@code strftime_now(fmt)}, Python string methods
 * ({@code message['content'].strip()}, {@code .startswith(..)}, {@code .split(..)}...), Hugging Face's
 * {@code tojson}. As in Python Jinja, a single trailing newline of the template text is dropped. The variables are
 * {@code messages} (a list of {@code {role, content}} maps), {@code add_generation_prompt}, {@code bos_token} and
 * {@code eos_token}.
 * <p>
 * Known differences from Python Jinja (Jinjava quirks), which common chat templates do not hit:
 * {@code {{ true }}} prints {@code true} (Python: {@code True}) and {@code {{ none }}} prints nothing (Python:
 * {@code None}); string repetition ({@code 'a' * 3}) fails; an unknown filter leaves the value unchanged instead of
 * failing; a few malformed constructs are not reported as syntax errors but output verbatim
 * ({@code {{ 'unterminated }}}) or render nothing ({@code {% for in x %}}).
 * <p>
 * Instances are immutable and thread-safe. Syntax errors are reported when a template is created.
 */
public final class ChatTemplate
{
    /** GGUF key of the template text. */
    public static final String METADATA_KEY = "tokenizer.chat_template";
    /** The built-in format used when a model has no template, as llama.cpp does. */
    public static final String FALLBACK_NAME = "chatml";

    private static final String TOKENS_KEY = "tokenizer.ggml.tokens";
    private static final String BOS_ID_KEY = "tokenizer.ggml.bos_token_id";
    private static final String EOS_ID_KEY = "tokenizer.ggml.eos_token_id";

    private final String source;
    private final String jinjaSource;
    private final String bosToken;
    private final String eosToken;
    private final boolean fallback;
    private final String description;

    private ChatTemplate(
        final String source,
        final String bosToken,
        final String eosToken,
        final boolean fallback,
        final String description,
        final boolean validate)
    {
        this.source = source;
        this.jinjaSource = dropTrailingNewline(source);
        this.bosToken = Objects.requireNonNull(bosToken, "bosToken");
        this.eosToken = Objects.requireNonNull(eosToken, "eosToken");
        this.fallback = fallback;
        this.description = description;
        if (validate)
        {
            checkSyntax();
        }
    }

    /**
     * The template of a model: {@code tokenizer.chat_template}, with {@code bos_token}/{@code eos_token} the texts of
     * the tokens {@code tokenizer.ggml.bos_token_id}/{@code eos_token_id} in {@code tokenizer.ggml.tokens} (empty
     * when absent). A model without a template (key absent or blank) gets the built-in {@value #FALLBACK_NAME}
     * format, flagged by {@link #isFallback()}.
     *
     * @param metadata the GGUF metadata.
     * @return the template.
     * @throws ChatTemplateException of kind {@link ChatTemplateException.Kind#SYNTAX} if the model's template is not
     *                               valid Jinja.
     */
    public static ChatTemplate fromMetadata(final GgufMetadata metadata)
    {
        final String bos = tokenText(metadata, BOS_ID_KEY);
        final String eos = tokenText(metadata, EOS_ID_KEY);
        final String text = metadata.getString(METADATA_KEY, null);
        if (text == null || text.isBlank())
        {
            return new ChatTemplate(BuiltinTemplates.source(FALLBACK_NAME), bos, eos, true,
                "no chat template in the model (" + METADATA_KEY + " is " + (text == null ? "absent" : "blank") +
                "); using the built-in fallback '" + FALLBACK_NAME + "' format: " +
                BuiltinTemplates.summary(FALLBACK_NAME), false);
        }
        return new ChatTemplate(text, bos, eos, false,
            "chat template from the model's " + METADATA_KEY + " (" + text.length() + " chars" + style(text) + ")",
            true);
    }

    /**
     * A built-in format, with that format's conventional special tokens (change them with
     * {@link #withSpecialTokens}):
     * <ul>
     * <li>{@code chatml}: {@code <|im_start|>role\ncontent<|im_end|>\n} per message, then
     * {@code <|im_start|>assistant\n} (Qwen, many fine-tunes; llama.cpp's default). eos {@code <|im_end|>}.</li>
     * <li>{@code llama3}: {@code <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>} after bos
     * {@code <|begin_of_text|>}, then {@code <|start_header_id|>assistant<|end_header_id|>\n\n}. eos
     * {@code <|eot_id|>}.</li>
     * <li>{@code llama2}: {@code <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s>}, each user
     * turn opened by bos; bos {@code <s>}, eos {@code </s>}. Ends with {@code [/INST]} whatever
     * {@code addGenerationPrompt}.</li>
     * <li>{@code zephyr}: {@code <|role|>\ncontent</s>\n} per message, then {@code <|assistant|>\n}; eos
     * {@code </s>}.</li>
     * </ul>
     *
     * @param name one of {@link #builtinNames()}, case-insensitive.
     * @return the template.
     * @throws IllegalArgumentException for an unknown name, listing the known ones.
     */
    public static ChatTemplate named(final String name)
    {
        final String key = name.toLowerCase(Locale.ROOT);
        final String text = BuiltinTemplates.source(key);
        if (text == null)
        {
            throw new IllegalArgumentException(
                "unknown chat template name '" + name + "', expected one of " + builtinNames());
        }
        return new ChatTemplate(text, BuiltinTemplates.bos(key), BuiltinTemplates.eos(key), false,
            "built-in '" + key + "' chat template: " + BuiltinTemplates.summary(key), false);
    }

    /**
     * A template from Jinja text, e.g. one supplied by the user.
     *
     * @param source   the template text.
     * @param bosToken value of {@code bos_token}.
     * @param eosToken value of {@code eos_token}.
     * @return the template.
     * @throws ChatTemplateException of kind {@link ChatTemplateException.Kind#SYNTAX} if it is not valid Jinja.
     */
    public static ChatTemplate of(final String source, final String bosToken, final String eosToken)
    {
        return new ChatTemplate(source, bosToken, eosToken, false,
            "custom chat template (" + source.length() + " chars" + style(source) + ")", true);
    }

    /** @return the names {@link #named(String)} accepts. */
    public static Set<String> builtinNames()
    {
        return BuiltinTemplates.names();
    }

    /**
     * @param bosToken value of {@code bos_token}.
     * @param eosToken value of {@code eos_token}.
     * @return this template with other special token texts.
     */
    public ChatTemplate withSpecialTokens(final String bosToken, final String eosToken)
    {
        return new ChatTemplate(source, bosToken, eosToken, fallback, description, false);
    }

    /**
     * Renders a conversation.
     *
     * @param messages            the conversation, oldest first.
     * @param addGenerationPrompt whether to append the header that opens the assistant's reply.
     * @return the prompt text, special tokens included as text.
     * @throws ChatTemplateException of kind {@link ChatTemplateException.Kind#RAISED} when the template rejects the
     *                               conversation (e.g. roles that do not alternate), with the template's message;
     *                               {@link ChatTemplateException.Kind#RENDER} for other failures.
     */
    public String render(final List<ChatMessage> messages, final boolean addGenerationPrompt)
    {
        final RenderResult result = JinjaEnvironment.render(jinjaSource, bindings(messages, addGenerationPrompt));
        for (final TemplateError error : result.getErrors())
        {
            if (error.getSeverity() != TemplateError.ErrorType.FATAL)
            {
                continue;
            }
            final ChatTemplateException raised = raisedBy(error);
            if (raised != null)
            {
                throw new ChatTemplateException(ChatTemplateException.Kind.RAISED, raised.getMessage(), raised);
            }
            throw new ChatTemplateException(ChatTemplateException.Kind.RENDER,
                "cannot render " + description + ": " + describe(error), error.getException());
        }
        return result.getOutput();
    }

    /** @return {@code true} when the model had no template and the {@value #FALLBACK_NAME} fallback is used. */
    public boolean isFallback()
    {
        return fallback;
    }

    /** @return where the template comes from, for logs and diagnostics (says so when it is the fallback). */
    public String describe()
    {
        return description;
    }

    /** @return the Jinja text. */
    public String source()
    {
        return source;
    }

    /** @return the value of {@code bos_token}. */
    public String bosToken()
    {
        return bosToken;
    }

    /** @return the value of {@code eos_token}. */
    public String eosToken()
    {
        return eosToken;
    }

    @Override
    public String toString()
    {
        return "ChatTemplate[" + description + "]";
    }

    /**
     * Parses the tag structure, then renders a sample conversation in validation mode (which visits every branch)
     * to find malformed tags and expressions. Only syntax errors fail here: a template may legitimately refuse the sample
     * (say, a system message) with raise_exception.
     */
    private void checkSyntax()
    {
        for (final TemplateError error : JinjaEnvironment.parseErrors(jinjaSource))
        {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL)
            {
                throw syntaxError(error);
            }
        }
        final List<ChatMessage> sample = List.of(
            ChatMessage.system("s"), ChatMessage.user("u"), ChatMessage.assistant("a"), ChatMessage.user("u"));
        final RenderResult result = JinjaEnvironment.validate(jinjaSource, bindings(sample, true));
        for (final TemplateError error : result.getErrors())
        {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL && isSyntaxError(error))
            {
                throw syntaxError(error);
            }
        }
    }

    private ChatTemplateException syntaxError(final TemplateError error)
    {
        return new ChatTemplateException(ChatTemplateException.Kind.SYNTAX,
            "syntax error in " + description + ": " + describe(error), error.getException());
    }

    private static String describe(final TemplateError error)
    {
        return error.getMessage() + (error.getLineno() > 0 ? " (line " + error.getLineno() + ")" : "");
    }

    /**
     * A malformed tag (Jinjava reports the tag text as the code, with no cause) or a malformed expression (the EL
     * parser's TreeBuilderException in the causes), as opposed to failures of evaluation.
     */
    private static boolean isSyntaxError(final TemplateError error)
    {
        if (error.getException() instanceof TemplateSyntaxException e && e.getCause() == null && e.getCode() != null
            && e.getCode().startsWith("{%"))
        {
            return true;
        }
        for (Throwable t = error.getException(); t != null; t = t.getCause())
        {
            if (t.getClass().getSimpleName().equals("TreeBuilderException"))
            {
                return true;
            }
        }
        return false;
    }

    private static ChatTemplateException raisedBy(final TemplateError error)
    {
        for (Throwable t = error.getException(); t != null; t = t.getCause())
        {
            if (t instanceof ChatTemplateException e && e.kind() == ChatTemplateException.Kind.RAISED)
            {
                return e;
            }
        }
        return null;
    }

    private Map<String, Object> bindings(final List<ChatMessage> messages, final boolean addGenerationPrompt)
    {
        final List<Map<String, Object>> list = new ArrayList<>(messages.size());
        for (final ChatMessage message : messages)
        {
            final Map<String, Object> map = new LinkedHashMap<>();
            map.put("role", message.role());
            map.put("content", message.content());
            list.add(map);
        }
        final Map<String, Object> bindings = new LinkedHashMap<>();
        bindings.put("messages", list);
        bindings.put("add_generation_prompt", addGenerationPrompt);
        bindings.put("bos_token", bosToken);
        bindings.put("eos_token", eosToken);
        return bindings;
    }

    /** Python Jinja drops one trailing newline of the template text ({@code keep_trailing_newline=False}). */
    private static String dropTrailingNewline(final String text)
    {
        if (text.endsWith("\r\n"))
        {
            return text.substring(0, text.length() - 2);
        }
        if (text.endsWith("\n") || text.endsWith("\r"))
        {
            return text.substring(0, text.length() - 1);
        }
        return text;
    }

    private static String tokenText(final GgufMetadata metadata, final String idKey)
    {
        if (!(metadata.get(idKey) instanceof Number id) || !(metadata.get(TOKENS_KEY) instanceof String[] tokens))
        {
            return "";
        }
        final long index = id.longValue();
        return index >= 0 && index < tokens.length ? tokens[(int)index] : "";
    }

    /** A hint at the format family, for {@link #describe()}. */
    private static String style(final String text)
    {
        if (text.contains("<|im_start|>"))
        {
            return ", ChatML-style";
        }
        if (text.contains("<|start_header_id|>"))
        {
            return ", Llama-3-style";
        }
        if (text.contains("[INST]"))
        {
            return ", [INST]-style";
        }
        if (text.contains("<|user|>") || text.contains("<|assistant|>"))
        {
            return ", Zephyr-style";
        }
        return "";
    }
}
