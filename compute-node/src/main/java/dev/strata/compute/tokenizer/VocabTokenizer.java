package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Objects;

/**
 * What both tokenizer models share: special-token splitting, BOS/EOS, rendering and decoding. Subclasses only
 * turn text fragments into tokens.
 */
abstract class VocabTokenizer implements Tokenizer
{
    final Vocabulary vocab;
    final SpecialTokens specials;
    private final SpecialTokenSplitter splitter;
    private final boolean addBos;
    private final boolean addEos;
    private final boolean addSpacePrefix;
    private final byte[][] pieces;

    VocabTokenizer(final Vocabulary vocab, final SpecialTokens specials, final SpecialTokenSplitter splitter,
        final TokenizerFlags flags, final byte[][] pieces)
    {
        this.vocab = vocab;
        this.specials = specials;
        this.splitter = splitter;
        this.addBos = flags.addBos();
        this.addEos = flags.addEos();
        this.addSpacePrefix = flags.addSpacePrefix();
        this.pieces = pieces;
    }

    @Override
    public final int[] encode(final String text, final boolean addSpecial, final boolean parseSpecial)
    {
        Objects.requireNonNull(text, "text");
        final String clean = replaceLoneSurrogates(text);
        final IntArrayList out = new IntArrayList(clean.length() / 3 + 4, IntArrayList.DEFAULT_NULL_VALUE);
        if (addSpecial && addBos)
        {
            out.addInt(require(specials.bos(), "BOS"));
        }
        if (!clean.isEmpty())
        {
            encodeFragments(clean, splitter.split(clean, parseSpecial), out);
        }
        if (addSpecial && addEos)
        {
            out.addInt(require(specials.eos(), "EOS"));
        }
        return out.toIntArray();
    }

    /** Tokenizes the text fragments and appends the special-token fragments, in order. */
    abstract void encodeFragments(String text, List<SpecialTokenSplitter.Fragment> fragments, IntArrayList out);

    private static int require(final int token, final String what)
    {
        if (token < 0)
        {
            throw new IllegalStateException("the vocabulary asks for a " + what + " token but has none");
        }
        return token;
    }

    @Override
    public final byte[] tokenBytes(final int token)
    {
        vocab.check(token);
        return pieces[token].clone();
    }

    /** The rendered piece without a defensive copy; callers must not modify it. */
    final byte[] piece(final int token)
    {
        vocab.check(token);
        return pieces[token];
    }

    @Override
    public final String decode(final int[] tokens)
    {
        final ByteArrayOutputStream out = new ByteArrayOutputStream(tokens.length * 4);
        boolean removeSpace = addSpacePrefix;
        for (final int token : tokens)
        {
            final byte[] piece = piece(token);
            final int skip = removeSpace && piece.length > 0 && piece[0] == ' ' ? 1 : 0;
            out.write(piece, skip, piece.length - skip);
            removeSpace = false;
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Override
    public final int bosToken()
    {
        return specials.bos();
    }

    @Override
    public final int eosToken()
    {
        return specials.eos();
    }

    @Override
    public final boolean isEndOfGeneration(final int token)
    {
        return specials.isEndOfGeneration(token);
    }

    @Override
    public final int vocabSize()
    {
        return vocab.size();
    }

    @Override
    public final String tokenText(final int token)
    {
        vocab.check(token);
        return vocab.text(token);
    }

    /** Whether text that starts the input or follows a special token gets a dummy-prefix space (SPM). */
    final boolean addsSpacePrefix()
    {
        return addSpacePrefix;
    }

    private static String replaceLoneSurrogates(final String text)
    {
        StringBuilder fixed = null;
        for (int i = 0; i < text.length(); i++)
        {
            final char c = text.charAt(i);
            final boolean paired = Character.isHighSurrogate(c) && i + 1 < text.length() &&
                Character.isLowSurrogate(text.charAt(i + 1));
            if (paired)
            {
                if (fixed != null)
                {
                    fixed.append(c).append(text.charAt(i + 1));
                }
                i++;
                continue;
            }
            if (Character.isSurrogate(c) && fixed == null)
            {
                fixed = new StringBuilder(text.length()).append(text, 0, i);
            }
            if (fixed != null)
            {
                fixed.append(Character.isSurrogate(c) ? '\uFFFD' : c);
            }
        }
        return fixed == null ? text : fixed.toString();
    }
}
