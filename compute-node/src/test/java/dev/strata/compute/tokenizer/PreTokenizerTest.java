package dev.strata.compute.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The hand-written pre-tokenizer scanners against the published regexes run by {@link java.util.regex}.
 * <p>
 * Java supports these regexes as written except {@code (?i:...)}, so the contraction part uses llama.cpp's
 * {@code '[sS]|'[tT]|...} form. With {@link Pattern#UNICODE_CHARACTER_CLASS}, Java's {@code \s} is the Unicode
 * White_Space property and {@code \p{L}}/{@code \p{N}}/{@code \p{P}} are the general categories, which is what
 * llama.cpp implements. As in llama.cpp, unmatched text between matches becomes a piece of its own, and a chain
 * applies each regex to every piece the previous one produced.
 */
class PreTokenizerTest
{
    private static final String CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    private static final String LLAMA3 = CONTRACTIONS +
        "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private static final String QWEN2 = CONTRACTIONS +
        "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private static final String GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
    private static final String[] DEFAULT_CHAIN = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"};

    private static final List<String> EXTRA_TEXTS = List.of(
        "Hello world", "I'M here, aren'T you? We'LL see'", "123456789", "x1234y 12 1", "a\r\n\r\nb", " \t \n x",
        "  leading", "trailing  ", "tab\there", "ä ö ü 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "中文字符测试，好！", "emoji 🦙🦙 done 👍🏽",
        "1,234.56", "$100 + 200 = 300 ~|^`", "\u00a0nbsp\u3000ideographic\u2028x", "'s's 'S", "don't", "x'", "'",
        "..\n\n", "a!!\r\n", " !", "  !", "٣٤٥ arabic digits", "Ⅻ roman", "\u001c\u001f separators", "\u0085nel",
        "\n", " ", "   \n   ", "\r\n \r\n  x", "«quoted» — dash… end", "a.b,c;d", "'ll'LL'Ll", " 'm", "___init___");

    private static List<String> texts()
    {
        final List<String> texts = new ArrayList<>(EXTRA_TEXTS);
        final boolean sharedPresent = java.nio.file.Files.isRegularFile(SharedModels.dir().resolve(SharedModels.GPT2_VOCAB + ".inp"));
        if (sharedPresent)
        {
            LlamaCppConformanceTest.cases(SharedModels.GPT2_VOCAB).forEach(c -> texts.add(c.text()));
        }
        return texts;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama3", "qwen2", "gpt-2", "default"})
    void handWrittenSplitterMatchesTheRegexRunByJavaUtilRegex(final String pre)
    {
        final PreTokenizer preTokenizer = PreTokenizer.forName(pre);
        final String[] chain = switch (pre)
        {
            case "llama3" -> new String[]{LLAMA3};
            case "qwen2" -> new String[]{QWEN2};
            case "gpt-2" -> new String[]{GPT2};
            default -> DEFAULT_CHAIN;
        };
        for (final String text : texts())
        {
            assertEquals(regexSplit(chain, text), preTokenizer.split(text),
                () -> pre + " split of '" + LlamaCppConformanceTest.escape(text) + "'");
        }
    }

    @Test
    void llama3GroupsDigitsByThreeAndQwen2SplitsEveryDigit()
    {
        // derived by hand from \p{N}{1,3} and \p{N}
        assertEquals(List.of("123", "45", " ", "6"), PreTokenizer.forName("llama3").split("12345 6"));
        assertEquals(List.of("1", "2", "3", "4", "5", " ", "6"), PreTokenizer.forName("qwen2").split("12345 6"));
    }

    @Test
    void llama3KeepsLineBreaksApartFromTheNextWordAndAttachesTheLastSpace()
    {
        // \s*[\r\n]+ takes the blank lines; " ?\p{L}+" gives the space before "b" to "b"
        assertEquals(List.of("a", "\n\n", " b"), PreTokenizer.forName("llama-bpe").split("a\n\n b"));
        // \s+(?!\S) leaves the last of several spaces to the word that follows
        assertEquals(List.of("Hello", "  ", " world"), PreTokenizer.forName("llama3").split("Hello   world"));
        // contractions are case-insensitive in llama3 but not in GPT-2
        assertEquals(List.of("I", "'M"), PreTokenizer.forName("llama3").split("I'M"));
        assertEquals(List.of("I", "'", "M"), PreTokenizer.forName("gpt-2").split("I'M"));
        assertEquals(List.of("don", "'t"), PreTokenizer.forName("gpt-2").split("don't"));
    }

    @Test
    void defaultChainSplitsPunctuationRunsAndDigitTriples()
    {
        // [\p{P}...]+ cuts "!!" out, GPT-2 keeps " 12345", \p{N}+ then cuts off its space, [0-9]{3} takes "123"
        assertEquals(List.of("Hi", "!!", " ", "123", "45"), PreTokenizer.forName(null).split("Hi!! 12345"));
    }

    @Test
    void unknownPreTokenizerFallsBackToDefaultAndSaysSo()
    {
        final PreTokenizer fallback = PreTokenizer.forName("deepseek-coder");
        assertFalse(fallback.isExact());
        assertEquals(PreTokenizer.forName("default").split("Hi!! 12345"), fallback.split("Hi!! 12345"));
        assertTrue(PreTokenizer.forName("qwen2").isExact());
    }

    /** llama.cpp's unicode_regex_split semantics with java.util.regex doing the matching. */
    private static List<String> regexSplit(final String[] chain, final String text)
    {
        List<String> pieces = text.isEmpty() ? List.of() : List.of(text);
        for (final String regex : chain)
        {
            final Pattern pattern = Pattern.compile(regex, Pattern.UNICODE_CHARACTER_CLASS);
            final List<String> next = new ArrayList<>();
            for (final String piece : pieces)
            {
                final Matcher m = pattern.matcher(piece);
                int last = 0;
                while (m.find())
                {
                    if (m.start() > last)
                    {
                        next.add(piece.substring(last, m.start()));
                    }
                    next.add(m.group());
                    last = m.end();
                }
                if (last < piece.length())
                {
                    next.add(piece.substring(last));
                }
            }
            pieces = next;
        }
        return pieces;
    }
}
