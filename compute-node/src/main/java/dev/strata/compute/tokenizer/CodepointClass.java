package dev.strata.compute.tokenizer;

/**
 * Unicode classification of code points as the pre-tokenizer regexes see them: {@code \p{L}}, {@code \p{N}},
 * {@code \p{P}} and {@code \s}.
 * <p>
 * Categories come from {@link Character#getType(int)} (the JDK's Unicode tables). llama.cpp generates its own
 * table from UnicodeData.txt; the two agree except for code points assigned in a Unicode version that only one
 * of them knows (llama.cpp then reports the point as undefined, which its regexes treat like punctuation).
 * Whitespace is the Unicode {@code White_Space} property, exactly llama.cpp's list: it does NOT include
 * U+001C..U+001F, which {@link Character#isWhitespace(int)} would.
 */
final class CodepointClass
{
    private CodepointClass()
    {
    }

    /** {@code \p{L}}: general category Lu, Ll, Lt, Lm or Lo. */
    static boolean isLetter(final int cp)
    {
        return switch (Character.getType(cp))
        {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
                Character.MODIFIER_LETTER, Character.OTHER_LETTER -> true;
            default -> false;
        };
    }

    /** {@code \p{N}}: general category Nd, Nl or No. */
    static boolean isNumber(final int cp)
    {
        return switch (Character.getType(cp))
        {
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> true;
            default -> false;
        };
    }

    /** {@code \p{P}}: general category Pc, Pd, Ps, Pe, Pi, Pf or Po. */
    static boolean isPunctuation(final int cp)
    {
        return switch (Character.getType(cp))
        {
            case Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
                Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
                Character.OTHER_PUNCTUATION -> true;
            default -> false;
        };
    }

    /** {@code \s}: the Unicode White_Space property. */
    static boolean isWhitespace(final int cp)
    {
        if (cp <= 0x20)
        {
            return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
        }
        if (cp < 0x85)
        {
            return false;
        }
        return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
            cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    }

    /** {@code [^\s\p{L}\p{N}]}: anything that is neither whitespace, letter nor number. */
    static boolean isOther(final int cp)
    {
        return !isWhitespace(cp) && !isLetter(cp) && !isNumber(cp);
    }

    /** ASCII-only lower-casing, all the case-insensitive contraction patterns ever need. */
    static int toLowerAscii(final int cp)
    {
        return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
    }
}
