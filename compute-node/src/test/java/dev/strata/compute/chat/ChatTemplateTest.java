package dev.strata.compute.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.gguf.GgufValueType;
import java.time.Year;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.ArrayList;
import org.junit.jupiter.api.Test;

/**
 * Templates below are test fixtures modeled on the public templates of each model family; the expected strings are
 * written by hand from each format's documentation, not produced by the code under test.
 */
class ChatTemplateTest
{
    private static final List<ChatMessage> CONVERSATION = List.of(
        ChatMessage.system("You are a helpful assistant."),
        ChatMessage.user("Hello!"),
        ChatMessage.assistant("Hi there."),
        ChatMessage.user("What is 2+2?"));

    // ------------------------------------------------------------------ Llama 3

    /** Shape of Meta-Llama-3-8B-Instruct's template: single line, "+ content | trim +" relying on filter precedence. */
    private static final String LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}"
        + "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
        + "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
        + "{{ content }}{% endfor %}{% if add_generation_prompt %}"
        + "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    private static final String LLAMA3_EXPECTED = "<|begin_of_text|>"
        + "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        + "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        + "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
        + "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>";
    private static final String LLAMA3_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n";

    @Test
    void llama3InstructTemplate()
    {
        final ChatTemplate template = ChatTemplate.fromMetadata(
            metadata(LLAMA3, new String[]{"<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"}, 1, 3));
        assertFalse(template.isFallback());
        assertEquals("<|begin_of_text|>", template.bosToken());
        assertEquals("<|eot_id|>", template.eosToken());
        assertEquals(LLAMA3_EXPECTED + LLAMA3_PROMPT, template.render(CONVERSATION, true));
        assertEquals(LLAMA3_EXPECTED, template.render(CONVERSATION, false));
        // | trim strips the content only, not the concatenation
        assertEquals("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nspaced<|eot_id|>",
            template.render(List.of(ChatMessage.user("  spaced \n")), false));
        assertTrue(template.describe().contains(ChatTemplate.METADATA_KEY), template.describe());
        assertTrue(template.describe().contains("Llama-3"), template.describe());
    }

    // ------------------------------------------------------------------ ChatML / Qwen2

    /** Shape of Qwen2-Instruct's template: a default system message when the conversation has none. */
    private static final String QWEN2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != "
        + "'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static final String CHATML_EXPECTED = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        + "<|im_start|>user\nHello!<|im_end|>\n"
        + "<|im_start|>assistant\nHi there.<|im_end|>\n"
        + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    private static final String CHATML_PROMPT = "<|im_start|>assistant\n";

    @Test
    void chatMlQwen2Template()
    {
        final ChatTemplate template = ChatTemplate.fromMetadata(
            metadata(QWEN2, new String[]{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, -1, 2));
        assertEquals("", template.bosToken());
        assertEquals("<|im_end|>", template.eosToken());
        assertEquals(CHATML_EXPECTED + CHATML_PROMPT, template.render(CONVERSATION, true));
        assertEquals(CHATML_EXPECTED, template.render(CONVERSATION, false));
        assertEquals("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHey<|im_end|>\n"
            + CHATML_PROMPT, template.render(List.of(ChatMessage.user("Hey")), true));
    }

    // ------------------------------------------------------------------ Mistral [INST]

    /** Shape of Mixtral-8x7B-Instruct's template: multi-line with {%- -%} control, system merged into turn one. */
    private static final String MISTRAL = """
        {%- if messages[0]['role'] == 'system' %}
            {%- set system_message = messages[0]['content'] %}
            {%- set loop_messages = messages[1:] %}
        {%- else %}
            {%- set loop_messages = messages %}
        {%- endif %}

        {{- bos_token }}
        {%- for message in loop_messages %}
            {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
                {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
            {%- endif %}
            {%- if message['role'] == 'user' %}
                {%- if loop.first and system_message is defined %}
                    {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
                {%- else %}
                    {{- ' [INST] ' + message['content'] + ' [/INST]' }}
                {%- endif %}
            {%- elif message['role'] == 'assistant' %}
                {{- ' ' + message['content'] + eos_token}}
            {%- else %}
                {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
            {%- endif %}
        {%- endfor %}
        """;

    /** Shape of Mistral-7B-Instruct-v0.1's template: no system role, strict alternation. */
    private static final String MISTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == "
        + "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
        + "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
        + "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        + "{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles "
        + "are supported!') }}{% endif %}{% endfor %}";

    private static final String[] LLAMA_TOKENS = {"<unk>", "<s>", "</s>"};

    @Test
    void mistralInstTemplate()
    {
        final ChatTemplate template = ChatTemplate.fromMetadata(metadata(MISTRAL, LLAMA_TOKENS, 1, 2));
        final String expected = "<s> [INST] You are a helpful assistant.\n\nHello! [/INST] Hi there.</s>"
            + " [INST] What is 2+2? [/INST]";
        assertEquals(expected, template.render(CONVERSATION, true));
        assertEquals(expected, template.render(CONVERSATION, false));
        assertEquals("<s> [INST] Hello! [/INST] Hi there.</s>",
            template.render(CONVERSATION.subList(1, 3), true));
    }

    @Test
    void raiseExceptionRejectsTheConversationWithTheTemplatesMessage()
    {
        final ChatTemplate mixtral = ChatTemplate.fromMetadata(metadata(MISTRAL, LLAMA_TOKENS, 1, 2));
        final ChatTemplateException e = assertThrows(ChatTemplateException.class, () -> mixtral.render(
            List.of(ChatMessage.user("a"), ChatMessage.user("b")), true));
        assertEquals(ChatTemplateException.Kind.RAISED, e.kind());
        assertTrue(e.getMessage().contains("conversation roles must alternate user/assistant"), e.getMessage());

        // v0.1 has no system role: the system message breaks the alternation check.
        final ChatTemplate v01 = ChatTemplate.fromMetadata(metadata(MISTRAL_V01, LLAMA_TOKENS, 1, 2));
        final ChatTemplateException e2 = assertThrows(ChatTemplateException.class,
            () -> v01.render(CONVERSATION, true));
        assertEquals(ChatTemplateException.Kind.RAISED, e2.kind());
        assertTrue(e2.getMessage().contains("Conversation roles must alternate"), e2.getMessage());
        assertEquals("<s>[INST] Hello! [/INST]Hi there.</s> [INST] What is 2+2? [/INST]",
            v01.render(CONVERSATION.subList(1, 4), true));

        final ChatTemplateException e3 = assertThrows(ChatTemplateException.class,
            () -> ChatTemplate.of("{{ raise_exception('custom: ' + messages[0].role) }}", "", "")
                .render(CONVERSATION, true));
        assertEquals(ChatTemplateException.Kind.RAISED, e3.kind());
        assertEquals("chat template raised an exception: custom: system", e3.getMessage());
    }

    // ------------------------------------------------------------------ TinyLlama / Zephyr

    /** Shape of TinyLlama-1.1B-Chat / Zephyr's template: one tag per line, relies on trim_blocks. */
    private static final String ZEPHYR = """
        {% for message in messages %}
        {% if message['role'] == 'user' %}
        {{ '<|user|>\\n' + message['content'] + eos_token }}
        {% elif message['role'] == 'system' %}
        {{ '<|system|>\\n' + message['content'] + eos_token }}
        {% elif message['role'] == 'assistant' %}
        {{ '<|assistant|>\\n'  + message['content'] + eos_token }}
        {% endif %}
        {% if loop.last and add_generation_prompt %}
        {{ '<|assistant|>' }}
        {% endif %}
        {% endfor %}""";

    private static final String ZEPHYR_EXPECTED = "<|system|>\nYou are a helpful assistant.</s>\n"
        + "<|user|>\nHello!</s>\n"
        + "<|assistant|>\nHi there.</s>\n"
        + "<|user|>\nWhat is 2+2?</s>\n";

    @Test
    void tinyLlamaZephyrTemplate()
    {
        final ChatTemplate template = ChatTemplate.fromMetadata(metadata(ZEPHYR, LLAMA_TOKENS, 1, 2));
        assertEquals(ZEPHYR_EXPECTED + "<|assistant|>\n", template.render(CONVERSATION, true));
        assertEquals(ZEPHYR_EXPECTED, template.render(CONVERSATION, false));
        assertTrue(template.describe().contains("Zephyr"), template.describe());
    }

    // ------------------------------------------------------------------ built-in formats

    @Test
    void builtInFormats()
    {
        assertEquals(List.of("chatml", "llama3", "llama2", "zephyr"), List.copyOf(ChatTemplate.builtinNames()));
        assertEquals(CHATML_EXPECTED + CHATML_PROMPT, ChatTemplate.named("chatml").render(CONVERSATION, true));
        assertEquals(CHATML_EXPECTED, ChatTemplate.named("ChatML").render(CONVERSATION, false));
        assertEquals(LLAMA3_EXPECTED + LLAMA3_PROMPT, ChatTemplate.named("llama3").render(CONVERSATION, true));
        assertEquals(LLAMA3_EXPECTED, ChatTemplate.named("llama3").render(CONVERSATION, false));
        assertEquals(ZEPHYR_EXPECTED + "<|assistant|>\n", ChatTemplate.named("zephyr").render(CONVERSATION, true));
        assertEquals("<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. </s>"
            + "<s>[INST] What is 2+2? [/INST]", ChatTemplate.named("llama2").render(CONVERSATION, true));
        assertEquals("<s>[INST] Hello! [/INST]", ChatTemplate.named("llama2").render(CONVERSATION.subList(1, 2), true));
        assertEquals("", ChatTemplate.named("llama2").render(List.of(), true));
        assertEquals("<|user|>\nx</s>\n", ChatTemplate.named("zephyr").withSpecialTokens("", "</s>")
            .render(List.of(ChatMessage.user("x")), false));
        assertTrue(ChatTemplate.named("llama3").describe().contains("built-in 'llama3'"));

        final IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> ChatTemplate.named("vicuna"));
        assertTrue(e.getMessage().contains("vicuna") && e.getMessage().contains("chatml"), e.getMessage());
        final ChatTemplateException r = assertThrows(ChatTemplateException.class,
            () -> ChatTemplate.named("llama2").render(List.of(ChatMessage.user("a"), new ChatMessage("tool", "b")),
                false));
        assertEquals(ChatTemplateException.Kind.RAISED, r.kind());
    }

    // ------------------------------------------------------------------ fallback

    @Test
    void modelWithoutTemplateGetsTheChatMlFallback()
    {
        final GgufMetadata md = new GgufMetadata()
            .putArray("tokenizer.ggml.tokens", GgufValueType.STRING, new String[]{"<unk>", "<s>", "</s>"})
            .putUInt32("tokenizer.ggml.bos_token_id", 1)
            .putUInt32("tokenizer.ggml.eos_token_id", 2);
        final ChatTemplate template = ChatTemplate.fromMetadata(md);
        assertTrue(template.isFallback());
        assertTrue(template.describe().contains("fallback") && template.describe().contains("chatml")
            && template.describe().contains("absent"), template.describe());
        assertEquals(CHATML_EXPECTED + CHATML_PROMPT, template.render(CONVERSATION, true));
        assertEquals("<s>", template.bosToken());
        assertEquals("</s>", template.eosToken());

        final ChatTemplate blank = ChatTemplate.fromMetadata(new GgufMetadata().putString(ChatTemplate.METADATA_KEY, " "));
        assertTrue(blank.isFallback());
        assertTrue(blank.describe().contains("blank"), blank.describe());
        assertEquals("", blank.bosToken());
        assertFalse(ChatTemplate.named("chatml").isFallback());
    }

    @Test
    void specialTokensAreEmptyWhenIdsOrVocabularyAreMissing()
    {
        final ChatTemplate noVocab = ChatTemplate.fromMetadata(new GgufMetadata()
            .putString(ChatTemplate.METADATA_KEY, "[{{ bos_token }}|{{ eos_token }}]")
            .putUInt32("tokenizer.ggml.bos_token_id", 1));
        assertEquals("[|]", noVocab.render(List.of(), false));
        final ChatTemplate outOfRange = ChatTemplate.fromMetadata(metadata("[{{ bos_token }}|{{ eos_token }}]",
            new String[]{"a"}, 5, 0));
        assertEquals("[|a]", outOfRange.render(List.of(), false));
    }

    // ------------------------------------------------------------------ syntax errors

    @Test
    void syntaxErrorsAreReportedAtLoadTime()
    {
        assertSyntaxError("{% for message in messages %}{{ message['content'] }}", "endfor");
        assertSyntaxError("{% if add_generation_prompt %}x{% endfor %}", "endfor");
        assertSyntaxError("{% generation %}{{ x }}{% endgeneration %}", "generation");
        // an expression error in a branch the sample conversation does not take
        assertSyntaxError("{% if messages|length > 100 %}{{ messages[0]['content' }}{% endif %}ok", "Error parsing");
        assertSyntaxError("{% if messages|length > 100 %}{% if %}x{% endif %}{% endif %}", "expects expression");
        assertSyntaxError("{% set = 3 %}", "requires a var name");
        assertSyntaxError("{% if %}x{% endif %}", "expects expression");
    }

    private static void assertSyntaxError(final String text, final String detail)
    {
        final ChatTemplateException e = assertThrows(ChatTemplateException.class,
            () -> ChatTemplate.fromMetadata(new GgufMetadata().putString(ChatTemplate.METADATA_KEY, text)), text);
        assertEquals(ChatTemplateException.Kind.SYNTAX, e.kind(), text);
        assertTrue(e.getMessage().startsWith("syntax error in chat template from the model's tokenizer.chat_template"),
            e.getMessage());
        assertTrue(e.getMessage().contains(detail), e.getMessage());
        assertThrows(ChatTemplateException.class, () -> ChatTemplate.of(text, "", ""));
    }

    @Test
    void otherRenderFailuresAreReportedWithTheirCause()
    {
        final ChatTemplate template = ChatTemplate.of("{{ no_such_function(messages) }}", "", "");
        final ChatTemplateException e = assertThrows(ChatTemplateException.class,
            () -> template.render(CONVERSATION, true));
        assertEquals(ChatTemplateException.Kind.RENDER, e.kind());
        assertTrue(e.getMessage().contains("no_such_function"), e.getMessage());
    }

    // ------------------------------------------------------------------ Jinja / Python features

    @Test
    void pythonStringMethodsAndJinjaFeatures()
    {
        assertRenders("[a b]|[a b  ]|[  a b]|[Hello]", "[{{ m.strip() }}]|[{{ m.lstrip() }}]|[{{ m.rstrip() }}]"
            + "|[{{ 'xxHelloyy'.strip('xy') }}]", "  a b  ");
        // Jinjava prints booleans in lower case (Python Jinja: True/False)
        assertRenders("true|false|true|true", "{{ m.startswith('He') }}|{{ m.endswith('He') }}"
            + "|{{ m.endswith(['x', 'lo!']) }}|{{ m.startswith(('a', 'H')) }}", "Hello!");
        assertRenders("HELLO!|hello!|Hello World|Hello world", "{{ m.upper() }}|{{ m.lower() }}"
            + "|{{ 'hello wORLD'.title() }}|{{ 'hELLO WORLD'.capitalize() }}", "Hello!");
        assertRenders("3|a-b-c|b|!|Hi!|2|2", "{{ m.split(',')|length }}|{{ '-'.join(m.split(',')) }}"
            + "|{{ m.split(',')[1] }}|{{ 'Hi!'[-1] }}|{{ 'Hi!'[0:2] + 'Hi!'[2] }}|{{ m.find('b') }}"
            + "|{{ m.count(',') }}", "a,b,c");
        assertRenders("['a', 'b']|x_y_z|3", "{{ '  a  b '.split() }}|{{ m.replace('-', '_') }}"
            + "|{{ 'l1\\nl2\\r\\nl3\\n'.splitlines()|length }}", "x-y-z");
        assertRenders("[x]|[]|anon|user", "[{{ m|trim }}]|[{{ '\u00a0 '|trim }}]"
            + "|{{ messages[0].get('name', 'anon') }}|{{ messages[0].get('role', 'none') }}", " x\n");
        assertRenders("first:user|last:user|2|user", "{% for x in messages + messages %}{% if loop.first %}first:"
            + "{{ x['role'] }}|{% endif %}{% if loop.last %}last:{{ x.role }}|{{ loop.length }}{% endif %}{% endfor %}"
            + "|{{ messages[-1]['role'] }}", "c");
        assertRenders("found", "{% set ns = namespace(hit=false) %}{% for x in messages %}{% if x.role == 'user' %}"
            + "{% set ns.hit = true %}{% endif %}{% endfor %}{{ 'found' if ns.hit else 'none' }}", "c");
        assertRenders("role,content", "{% for k in messages[0] %}{{ k }}{% if not loop.last %},{% endif %}"
            + "{% endfor %}", "c");
        assertRenders("ab", "{{- 'a' -}}\n   {# note #}\n  {{- 'b' }}\n", "c");
    }

    @Test
    void toJsonMatchesHuggingFace()
    {
        assertRenders("{\"name\": \"f\", \"args\": [1, 2.5, \"x\\n\\\"\u00e9\"], \"none\": null, \"ok\": true}",
            "{{ {'name': 'f', 'args': [1, 2.5, m], 'none': none, 'ok': true}|tojson }}", "x\n\"\u00e9");
        assertRenders("{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}",
            "{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}", "c");
        assertRenders("{\"a\": 1, \"b\": 2}", "{{ {'b': 2, 'a': 1}|tojson(sort_keys=true) }}", "c");
    }

    @Test
    void strftimeNowFormatsTheCurrentDate()
    {
        final int before = Year.now().getValue();
        final String year = ChatTemplate.of("{{ strftime_now('%Y') }}", "", "").render(List.of(), false);
        final int after = Year.now().getValue();
        assertTrue(year.equals(Integer.toString(before)) || year.equals(Integer.toString(after)), year);
        assertTrue(ChatTemplate.of("{{ strftime_now('%d %b %Y') }}", "", "").render(List.of(), false)
            .matches("\\d\\d [A-Z][a-z]{2} \\d{4}"));
    }

    @Test
    void aSingleTrailingNewlineOfTheTemplateIsDropped()
    {
        assertEquals("x", ChatTemplate.of("{{ 'x' }}\n", "", "").render(List.of(), false));
        assertEquals("x\n", ChatTemplate.of("{{ 'x' }}\n\n", "", "").render(List.of(), false));
        assertEquals("x", ChatTemplate.of("x\r\n", "", "").render(List.of(), false));
    }

    @Test
    void rendersConcurrently() throws Exception
    {
        final ChatTemplate template = ChatTemplate.fromMetadata(metadata(MISTRAL, LLAMA_TOKENS, 1, 2));
        final String expected = template.render(CONVERSATION, true);
        final ExecutorService pool = Executors.newFixedThreadPool(4);
        try
        {
            final List<Future<String>> results = new ArrayList<>();
            for (int i = 0; i < 64; i++)
            {
                results.add(pool.submit(() -> template.render(CONVERSATION, true)));
            }
            for (final Future<String> result : results)
            {
                assertEquals(expected, result.get());
            }
        }
        finally
        {
            pool.shutdownNow();
        }
    }

    @Test
    void chatMessageRejectsNulls()
    {
        assertThrows(NullPointerException.class, () -> new ChatMessage(null, "x"));
        assertThrows(NullPointerException.class, () -> new ChatMessage("user", null));
        assertEquals(new ChatMessage("assistant", "a"), ChatMessage.assistant("a"));
    }

    // ------------------------------------------------------------------ helpers

    /** Renders text with a one-user-message conversation whose content is also bound as m via messages[0]. */
    private static void assertRenders(final String expected, final String text, final String content)
    {
        final ChatTemplate template = ChatTemplate.of("{% set m = messages[0]['content'] %}" + text, "", "");
        assertEquals(expected, template.render(List.of(ChatMessage.user(content)), false), text);
    }

    private static GgufMetadata metadata(final String template, final String[] tokens, final int bos, final int eos)
    {
        final GgufMetadata md = new GgufMetadata()
            .putString(ChatTemplate.METADATA_KEY, template)
            .putArray("tokenizer.ggml.tokens", GgufValueType.STRING, tokens);
        if (bos >= 0)
        {
            md.putUInt32("tokenizer.ggml.bos_token_id", bos);
        }
        if (eos >= 0)
        {
            md.putUInt32("tokenizer.ggml.eos_token_id", eos);
        }
        return md;
    }
}
