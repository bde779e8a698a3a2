/**
 * Chat templates: turning a conversation into the prompt text a chat model was trained on.
 * <p>
 * {@link dev.strata.compute.chat.ChatTemplate#fromMetadata(dev.strata.compute.gguf.GgufMetadata)} reads the Jinja
 * template a GGUF file carries under {@code tokenizer.chat_template} and renders it with Jinjava, configured to
 * behave like the Hugging Face / llama.cpp environment ({@code trim_blocks} and {@code lstrip_blocks} on,
 * {@code raise_exception}, {@code strftime_now}, Python string methods such as {@code .strip()} and
 * {@code .startswith()}, Python-style {@code tojson}). Models without a template get a documented ChatML fallback;
 * a few formats are built in ({@link dev.strata.compute.chat.ChatTemplate#named(String)}).
 */
package dev.strata.compute.chat;
