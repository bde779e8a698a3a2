package dev.strata.compute.tokenizer;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * llama.cpp's own tokenizer test vectors ({@code tests/test-tokenizer-0}): every text of {@code X.gguf.inp} must
 * encode, without special tokens, to exactly the ids on the same line of {@code X.gguf.out}.
 */
class LlamaCppConformanceTest
{
    private static final String SEPARATOR = "\n__ggml_vocab_test__\n";

    /** One test vector. */
    record Case(String text, int[] expected)
    {
    }

    /** Reads the vectors the way test-tokenizer-0.cpp does. */
    static List<Case> cases(final String vocab)
    {
        final String inp = SharedModels.read(vocab + ".inp");
        final String out = SharedModels.read(vocab + ".out");
        final List<String> texts = new ArrayList<>();
        int pos = 0;
        while (pos < inp.length())
        {
            final int next = inp.indexOf(SEPARATOR, pos);
            if (next < 0)
            {
                texts.add(inp.substring(pos));
                break;
            }
            texts.add(inp.substring(pos, next));
            pos = next + SEPARATOR.length();
        }
        final List<String> lines = new ArrayList<>(Arrays.asList(out.split("\n", -1)));
        if (out.endsWith("\n"))
        {
            lines.removeLast();
        }
        assertEquals(texts.size(), lines.size(), "test strings in .inp vs lines in .out for " + vocab);
        final List<Case> cases = new ArrayList<>();
        for (int i = 0; i < texts.size(); i++)
        {
            final String line = lines.get(i).strip();
            final int[] ids = line.isEmpty() ? new int[0] : Arrays.stream(line.split(" ")).mapToInt(Integer::parseInt).toArray();
            cases.add(new Case(texts.get(i), ids));
        }
        return cases;
    }

    @ParameterizedTest
    @ValueSource(strings = {SharedModels.SPM_VOCAB, SharedModels.GPT2_VOCAB})
    void everyTestTextEncodesToTheIdsLlamaCppProduces(final String vocab)
    {
        final Tokenizer tokenizer = SharedModels.tokenizer(vocab);
        final List<Case> cases = cases(vocab);
        final List<String> mismatches = new ArrayList<>();
        for (final Case c : cases)
        {
            final int[] actual = tokenizer.encode(c.text(), false, false);
            if (!Arrays.equals(c.expected(), actual))
            {
                mismatches.add("text '" + escape(c.text()) + "'\n  expected " + Arrays.toString(c.expected()) +
                    "\n  actual   " + Arrays.toString(actual));
            }
        }
        assertTrue(cases.size() >= 40, "expected the 46 llama.cpp test strings, found " + cases.size());
        assertTrue(mismatches.isEmpty(), mismatches.size() + " of " + cases.size() + " texts differ from llama.cpp for " +
            vocab + ":\n" + String.join("\n", mismatches));
    }

    @ParameterizedTest
    @ValueSource(strings = {SharedModels.SPM_VOCAB, SharedModels.GPT2_VOCAB})
    void decodingTheEncodedTestTextsGivesTheTextsBack(final String vocab)
    {
        final Tokenizer tokenizer = SharedModels.tokenizer(vocab);
        final List<String> failures = new ArrayList<>();
        for (final Case c : cases(vocab))
        {
            final String decoded = tokenizer.decode(tokenizer.encode(c.text(), false, false));
            if (!decoded.equals(c.text()))
            {
                failures.add("'" + escape(c.text()) + "' came back as '" + escape(decoded) + "'");
            }
        }
        assertTrue(failures.isEmpty(), String.join("\n", failures));
    }

    @ParameterizedTest
    @ValueSource(strings = {SharedModels.SPM_VOCAB, SharedModels.GPT2_VOCAB})
    void decodingTheExpectedIdsGivesTheTextsBack(final String vocab)
    {
        final Tokenizer tokenizer = SharedModels.tokenizer(vocab);
        for (final Case c : cases(vocab))
        {
            assertEquals(c.text(), tokenizer.decode(c.expected()), () -> "decode of llama.cpp's ids for '" + escape(c.text()) + "'");
        }
    }

    static String escape(final String s)
    {
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r");
    }
}
