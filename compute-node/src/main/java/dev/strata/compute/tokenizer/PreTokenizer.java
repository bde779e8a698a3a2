package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits text into words before byte-level BPE, as chosen by {@code tokenizer.ggml.pre}. A pre-tokenizer is a
 * chain of regexes; each one splits every piece the previous ones produced (llama.cpp's
 * {@code unicode_regex_split}).
 * <p>
 * Supported names, with llama.cpp's regex lists:
 * <ul>
 * <li>missing or {@code default}: {@code [\p{P}\$\+<=>\^~\|]+}, GPT-2, {@code \p{N}+}, {@code [0-9][0-9][0-9]};</li>
 * <li>{@code gpt-2} (and {@code phi-2}, {@code mpt}, {@code olmo}, {@code jais}, {@code roberta-bpe},
 * {@code gigachat}, {@code jina-*}): GPT-2;</li>
 * <li>{@code llama3}, {@code llama-v3}, {@code llama-bpe}, {@code falcon3}, {@code dbrx}, {@code smaug-bpe},
 * {@code chatglm-bpe}: Llama 3;</li>
 * <li>{@code qwen2}, {@code deepseek-r1-qwen}, {@code stablelm2}, {@code megrez}: Qwen 2;</li>
 * <li>{@code starcoder}, {@code refact}, {@code command-r}, {@code smollm}, {@code codeshell}, {@code exaone},
 * {@code minerva-7b}: {@code \p{N}}, then GPT-2;</li>
 * <li>{@code falcon}: {@code [\p{P}\$\+<=>\^~\|`]+}, GPT-2, {@code [0-9][0-9][0-9]}.</li>
 * </ul>
 * Any other name (deepseek-llm/coder/v3, poro-chat, bloom, gpt3-finnish, viking, tekken, chameleon, or a name
 * llama.cpp does not know, which it rejects) falls back to {@code default}; {@link #isExact()} then says false
 * and the tokenizer logs a warning, because the tokens will not always match llama.cpp's.
 */
final class PreTokenizer
{
    private final String name;
    private final List<SplitRule> rules;
    private final boolean exact;

    private PreTokenizer(final String name, final boolean exact, final SplitRule... rules)
    {
        this.name = name;
        this.exact = exact;
        this.rules = List.of(rules);
    }

    /** The pre-tokenizer for a {@code tokenizer.ggml.pre} value ({@code null} when the key is missing). */
    static PreTokenizer forName(final String pre)
    {
        final String name = pre == null ? "default" : pre;
        return switch (name)
        {
            case "default" -> defaultChain(name, true);
            case "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "gigachat", "jina-es", "jina-de",
                "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code" ->
                new PreTokenizer(name, true, Gpt2Split.INSTANCE);
            case "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe" ->
                new PreTokenizer(name, true, LlamaSplit.LLAMA3);
            case "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez" -> new PreTokenizer(name, true, LlamaSplit.QWEN2);
            case "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b" ->
                new PreTokenizer(name, true, CharClassSplit.SINGLE_NUMBERS, Gpt2Split.INSTANCE);
            case "falcon" -> new PreTokenizer(name, true,
                CharClassSplit.PUNCTUATION_RUNS_WITH_BACKTICK, Gpt2Split.INSTANCE, CharClassSplit.ASCII_DIGIT_TRIPLES);
            default -> defaultChain(name, false);
        };
    }

    private static PreTokenizer defaultChain(final String name, final boolean exact)
    {
        return new PreTokenizer(name, exact, CharClassSplit.PUNCTUATION_RUNS, Gpt2Split.INSTANCE,
            CharClassSplit.NUMBER_RUNS, CharClassSplit.ASCII_DIGIT_TRIPLES);
    }

    /** The {@code tokenizer.ggml.pre} name this was built for ({@code default} when missing). */
    String name()
    {
        return name;
    }

    /** False when the name is not implemented and the default chain stands in for it. */
    boolean isExact()
    {
        return exact;
    }

    /** Lengths, in code points, of the words of {@code codePoints}. */
    IntArrayList splitLengths(final int[] codePoints)
    {
        IntArrayList lengths = new IntArrayList();
        if (codePoints.length == 0)
        {
            return lengths;
        }
        lengths.addInt(codePoints.length);
        for (final SplitRule rule : rules)
        {
            final IntArrayList next = new IntArrayList(lengths.size() * 2, IntArrayList.DEFAULT_NULL_VALUE);
            int start = 0;
            for (int i = 0; i < lengths.size(); i++)
            {
                final int end = start + lengths.getInt(i);
                rule.split(codePoints, start, end, next);
                start = end;
            }
            lengths = next;
        }
        return lengths;
    }

    /** The words of {@code text}, as plain strings (for tests and diagnostics). */
    List<String> split(final String text)
    {
        final int[] cps = text.codePoints().toArray();
        final IntArrayList lengths = splitLengths(cps);
        final List<String> words = new ArrayList<>(lengths.size());
        int start = 0;
        for (int i = 0; i < lengths.size(); i++)
        {
            words.add(new String(cps, start, lengths.getInt(i)));
            start += lengths.getInt(i);
        }
        return words;
    }
}
