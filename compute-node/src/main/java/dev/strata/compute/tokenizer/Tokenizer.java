package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;

/**
 * Text to token ids and back, built from the {@code tokenizer.ggml.*} metadata of a GGUF file and matching
 * llama.cpp's {@code llama_tokenize} / {@code llama_token_to_piece} / {@code llama_detokenize}.
 * <p>
 * Implementations are immutable and safe to share between threads.
 */
public interface Tokenizer
{
    /** The GGUF key naming the tokenizer model. */
    String KEY_MODEL = "tokenizer.ggml.model";

    /**
     * Builds the tokenizer a GGUF file describes, chosen by {@code tokenizer.ggml.model}:
     * <ul>
     * <li>{@code llama}: SentencePiece-style BPE over scored pieces, with byte fallback ({@code <0xXX>} tokens),
     * spaces escaped as U+2581 and a dummy-prefix space (unless {@code tokenizer.ggml.add_space_prefix} is
     * false). Adds BOS by default.</li>
     * <li>{@code gpt2}: byte-level BPE with ranked {@code tokenizer.ggml.merges}, after the pre-tokenizer named by
     * {@code tokenizer.ggml.pre}. Adds BOS only if {@code tokenizer.ggml.add_bos_token} says so (or for the
     * llama3-family pre-tokenizers, as llama.cpp).</li>
     * </ul>
     *
     * @throws IllegalArgumentException if the model is missing or not one of those, or the vocabulary is unusable.
     */
    static Tokenizer fromGguf(final GgufMetadata md)
    {
        final String model = md.getString(KEY_MODEL, null);
        if (model == null)
        {
            throw new IllegalArgumentException("GGUF metadata has no " + KEY_MODEL + ": cannot build a tokenizer");
        }
        return switch (model)
        {
            case "llama" -> SentencePieceTokenizer.create(md);
            case "gpt2" -> BytePairTokenizer.create(md);
            default -> throw new IllegalArgumentException("unsupported tokenizer model '" + model + "' (" + KEY_MODEL +
                "); supported: 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)");
        };
    }

    /**
     * Encodes text.
     *
     * @param text         the text; unpaired surrogates are read as U+FFFD.
     * @param addSpecial   add BOS (and EOS) if the vocabulary asks for them ({@code tokenizer.ggml.add_bos_token},
     *                     {@code add_eos_token}).
     * @param parseSpecial recognise the texts of CONTROL and UNKNOWN tokens (e.g. {@code <|im_end|>}) in the input
     *                     and emit their ids; USER_DEFINED tokens are recognised either way.
     * @return the token ids.
     */
    int[] encode(String text, boolean addSpecial, boolean parseSpecial);

    /**
     * The raw bytes one token contributes to output text ({@code llama_token_to_piece} without special
     * rendering): SPM pieces with U+2581 turned into spaces, {@code <0xXX>} as that byte, byte-level BPE pieces
     * mapped back through the GPT-2 byte table, USER_DEFINED tokens as their text, and nothing for CONTROL,
     * UNKNOWN and UNUSED tokens. A piece may be part of a UTF-8 sequence; see {@link StreamingDecoder}.
     *
     * @throws IllegalArgumentException if the id is not in the vocabulary.
     */
    byte[] tokenBytes(int token);

    /**
     * Decodes tokens to text as {@code llama_detokenize(remove_special = false, unparse_special = false)}:
     * the pieces of {@link #tokenBytes} concatenated and read as UTF-8 (bad sequences become U+FFFD). When the
     * vocabulary adds a dummy-prefix space (SPM), one leading space of the first token is dropped, so
     * {@code decode(encode(text, false, false))} gives the text back; a leading BOS renders as nothing but uses
     * up that rule, so text after BOS keeps its leading space, as in llama.cpp. Unlike llama.cpp, no
     * {@code clean_up_tokenization_spaces} pass is made for BPE vocabularies: the output is exactly the pieces.
     *
     * @throws IllegalArgumentException if an id is not in the vocabulary.
     */
    String decode(int[] tokens);

    /** The beginning-of-sequence token, or -1 if the vocabulary has none. */
    int bosToken();

    /** The end-of-sequence token, or -1 if the vocabulary has none. */
    int eosToken();

    /**
     * Whether generation should stop at this token: EOS, the EOT and EOM tokens, FIM pad/repo/separator, and any
     * token whose text is one of {@code <|eot_id|>}, {@code <|im_end|>}, {@code <|end|>}, {@code <end_of_turn>},
     * {@code <|endoftext|>}, {@code <|eom_id|>}, {@code <EOT>} (llama.cpp's guess). False for ids outside the
     * vocabulary.
     */
    boolean isEndOfGeneration(int token);

    /** Number of tokens in the vocabulary. */
    int vocabSize();

    /**
     * The token's text as stored in the vocabulary (e.g. {@code ▁the}, {@code Ġthe}, {@code <0x0A>}); an empty
     * vocabulary entry reads as {@code [EMPTY_<id>]}, as in llama.cpp.
     *
     * @throws IllegalArgumentException if the id is not in the vocabulary.
     */
    String tokenText(int token);
}
