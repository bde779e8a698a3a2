/**
 * Tokenizers built from GGUF metadata, matching llama.cpp token for token: the {@code llama} SentencePiece
 * tokenizer (scores, byte fallback, dummy-prefix space) and the {@code gpt2} byte-level BPE tokenizer (merge
 * ranks and the {@code tokenizer.ggml.pre} pre-tokenizer regexes), with special-token parsing, BOS/EOS and
 * end-of-generation rules, decoding, and UTF-8-safe streaming decoding of generated tokens.
 * <p>
 * The public surface is {@link dev.strata.compute.tokenizer.Tokenizer} (built with
 * {@link dev.strata.compute.tokenizer.Tokenizer#fromGguf}) and
 * {@link dev.strata.compute.tokenizer.StreamingDecoder}; everything else is package-private. The package owns
 * text-to-token conversion only: chat templates and samplers live elsewhere.
 */
package dev.strata.compute.tokenizer;
