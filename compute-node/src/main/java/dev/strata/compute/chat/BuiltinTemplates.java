package dev.strata.compute.chat;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/** The Jinja sources of {@link ChatTemplate#named(String)}, written for Strata from the formats' documentation. */
final class BuiltinTemplates
{
    private record Format(String source, String bos, String eos, String summary)
    {
    }

    private static final Map<String, Format> FORMATS = new LinkedHashMap<>();

    static
    {
        FORMATS.put("chatml", new Format("""
            {%- for message in messages %}
                {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}
            {%- endfor %}
            {%- if add_generation_prompt %}
                {{- '<|im_start|>assistant\\n' }}
            {%- endif %}
            """, "", "<|im_end|>",
            "<|im_start|>{role}\\n{content}<|im_end|>\\n per message, then <|im_start|>assistant\\n"));

        FORMATS.put("llama3", new Format("""
            {{- bos_token }}
            {%- for message in messages %}
                {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) \
            + '<|eot_id|>' }}
            {%- endfor %}
            {%- if add_generation_prompt %}
                {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
            {%- endif %}
            """, "<|begin_of_text|>", "<|eot_id|>",
            "{bos}<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|> per message, then "
                + "<|start_header_id|>assistant<|end_header_id|>\\n\\n"));

        FORMATS.put("llama2", new Format("""
            {%- if messages and messages[0]['role'] == 'system' %}
                {%- set system_message = messages[0]['content'] | trim %}
                {%- set loop_messages = messages[1:] %}
            {%- else %}
                {%- set system_message = '' %}
                {%- set loop_messages = messages %}
            {%- endif %}
            {%- for message in loop_messages %}
                {%- if message['role'] == 'user' %}
                    {%- if loop.first and system_message %}
                        {{- bos_token + '[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' \
            + (message['content'] | trim) + ' [/INST]' }}
                    {%- else %}
                        {{- bos_token + '[INST] ' + (message['content'] | trim) + ' [/INST]' }}
                    {%- endif %}
                {%- elif message['role'] == 'assistant' %}
                    {{- ' ' + (message['content'] | trim) + ' ' + eos_token }}
                {%- else %}
                    {{- raise_exception('llama2 chat format: unsupported role ' + message['role']) }}
                {%- endif %}
            {%- endfor %}
            """, "<s>", "</s>",
            "{bos}[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} {eos} ..."));

        FORMATS.put("zephyr", new Format("""
            {%- for message in messages %}
                {{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}
            {%- endfor %}
            {%- if add_generation_prompt %}
                {{- '<|assistant|>\\n' }}
            {%- endif %}
            """, "<s>", "</s>", "<|{role}|>\\n{content}{eos}\\n per message, then <|assistant|>\\n"));
    }

    private BuiltinTemplates()
    {
    }

    static Set<String> names()
    {
        return Collections.unmodifiableSet(FORMATS.keySet());
    }

    static String source(final String name)
    {
        final Format f = FORMATS.get(name);
        return f == null ? null : f.source();
    }

    static String bos(final String name)
    {
        return FORMATS.get(name).bos();
    }

    static String eos(final String name)
    {
        return FORMATS.get(name).eos();
    }

    static String summary(final String name)
    {
        return FORMATS.get(name).summary();
    }
}
