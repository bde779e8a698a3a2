package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;

import java.util.BitSet;
import java.util.List;
import java.util.Set;

/**
 * The special token ids of a vocabulary and its end-of-generation set, resolved as llama.cpp's
 * {@code llama_vocab::impl::load} does:
 * <ol>
 * <li>start from the model type's defaults (SPM: bos 1, eos 2, unk 0; gpt2: bos 11, eos 11);</li>
 * <li>override with the {@code tokenizer.ggml.*_token_id} keys, ignoring ids outside the vocabulary;</li>
 * <li>when no key names them, find EOT, EOM and the FIM tokens by their text ({@code <|eot_id|>}, {@code <|im_end|>},
 * ...) and force such tokens to CONTROL;</li>
 * <li>end of generation = FIM pad/repo/sep, every token whose text is one of {@link #EOG_TEXTS} (also forced to
 * CONTROL), eos, eot and eom.</li>
 * </ol>
 * llama.cpp walks an unordered map when guessing by text, so if several tokens match one role the one it picks
 * is unspecified; this class picks the lowest id. That only matters for a vocabulary with several candidates
 * for one role, one of them outside {@link #EOG_TEXTS} (such as {@code <｜end▁of▁sentence｜>}).
 * <p>
 * Resolving may change token attributes of the vocabulary (the forced CONTROL).
 */
final class SpecialTokens
{
    /** Texts that always end generation. */
    static final Set<String> EOG_TEXTS = Set.of(
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>");

    private static final List<String> EOT_TEXTS = List.of(
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<｜end▁of▁sentence｜>");
    private static final List<String> EOM_TEXTS = List.of("<|eom_id|>");
    private static final List<String> FIM_PRE_TEXTS =
        List.of("<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>");
    private static final List<String> FIM_SUF_TEXTS =
        List.of("<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>");
    private static final List<String> FIM_MID_TEXTS =
        List.of("<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>");
    private static final List<String> FIM_PAD_TEXTS = List.of("<|fim_pad|>", "<fim-pad>", "<PAD>");
    private static final List<String> FIM_REP_TEXTS = List.of("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>");
    private static final List<String> FIM_SEP_TEXTS = List.of("<|file_sep|>");

    private static final String PREFIX = "tokenizer.ggml.";

    private final int bos;
    private final int eos;
    private final int unk;
    private final BitSet endOfGeneration;

    private SpecialTokens(final int bos, final int eos, final int unk, final BitSet endOfGeneration)
    {
        this.bos = bos;
        this.eos = eos;
        this.unk = unk;
        this.endOfGeneration = endOfGeneration;
    }

    /**
     * Resolves the special tokens.
     *
     * @param defaultBos the model type's default BOS id, or -1.
     * @param defaultEos the model type's default EOS id, or -1.
     * @param defaultUnk the model type's default UNK id, or -1.
     */
    static SpecialTokens resolve(final GgufMetadata md, final Vocabulary vocab,
        final int defaultBos, final int defaultEos, final int defaultUnk)
    {
        final int bos = id(md, vocab, "bos_token_id", defaultBos);
        final int eos = id(md, vocab, "eos_token_id", defaultEos);
        final int unk = id(md, vocab, "unknown_token_id", defaultUnk);
        final int eot = byText(vocab, id(md, vocab, "eot_token_id", -1), EOT_TEXTS);
        final int eom = byText(vocab, id(md, vocab, "eom_token_id", -1), EOM_TEXTS);
        // FIM prefix/suffix/middle do not end generation, but guessing them makes them CONTROL, which matters to
        // special-token parsing; the deprecated prefix/suffix/middle keys win over the fim_* keys, as in llama.cpp
        byText(vocab, id(md, vocab, "prefix_token_id", id(md, vocab, "fim_pre_token_id", -1)), FIM_PRE_TEXTS);
        byText(vocab, id(md, vocab, "suffix_token_id", id(md, vocab, "fim_suf_token_id", -1)), FIM_SUF_TEXTS);
        byText(vocab, id(md, vocab, "middle_token_id", id(md, vocab, "fim_mid_token_id", -1)), FIM_MID_TEXTS);
        final int fimPad = byText(vocab, id(md, vocab, "fim_pad_token_id", -1), FIM_PAD_TEXTS);
        final int fimRep = byText(vocab, id(md, vocab, "fim_rep_token_id", -1), FIM_REP_TEXTS);
        final int fimSep = byText(vocab, id(md, vocab, "fim_sep_token_id", -1), FIM_SEP_TEXTS);

        final BitSet eog = new BitSet(vocab.size());
        for (final int id : new int[]{fimPad, fimRep, fimSep, eos, eot, eom})
        {
            if (id >= 0)
            {
                eog.set(id);
            }
        }
        for (final String text : EOG_TEXTS)
        {
            final int id = vocab.id(text);
            if (id >= 0)
            {
                eog.set(id);
                vocab.setAttr(id, TokenAttr.CONTROL, true);
            }
        }
        return new SpecialTokens(bos, eos, unk, eog);
    }

    /** Reads {@code tokenizer.ggml.<name>}; a missing key, or an id outside the vocabulary, keeps the default. */
    private static int id(final GgufMetadata md, final Vocabulary vocab, final String name, final int defaultId)
    {
        final Object value = md.get(PREFIX + name);
        if (value instanceof Number number)
        {
            final long id = number.longValue();
            if (id >= 0 && id < vocab.size())
            {
                return (int)id;
            }
        }
        return vocab.contains(defaultId) ? defaultId : -1;
    }

    /** The given id, or when there is none the lowest-id token with one of the texts (made CONTROL). */
    private static int byText(final Vocabulary vocab, final int given, final List<String> texts)
    {
        if (given >= 0)
        {
            return given;
        }
        int found = -1;
        for (final String text : texts)
        {
            final int id = vocab.id(text);
            if (id >= 0 && (found < 0 || id < found))
            {
                found = id;
            }
        }
        if (found >= 0)
        {
            vocab.setAttr(found, TokenAttr.CONTROL, true);
        }
        return found;
    }

    int bos()
    {
        return bos;
    }

    int eos()
    {
        return eos;
    }

    int unk()
    {
        return unk;
    }

    boolean isEndOfGeneration(final int token)
    {
        return token >= 0 && endOfGeneration.get(token);
    }
}
