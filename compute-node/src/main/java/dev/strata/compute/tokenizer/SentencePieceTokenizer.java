package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

import dev.strata.compute.gguf.GgufMetadata;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.PriorityQueue;

/**
 * The {@code llama} (SentencePiece BPE) tokenizer, as llama.cpp's {@code llm_tokenizer_spm}.
 * <p>
 * Each text fragment gets the dummy-prefix space when it starts the input or follows a special token (if
 * {@code add_space_prefix}), has its spaces replaced by U+2581, and is split into code points. Then the adjacent
 * pair whose concatenation is the highest-scoring vocabulary token is merged (ties: leftmost first) until no pair
 * forms a token. Pieces that are not tokens fall back to their UTF-8 bytes as {@code <0xXX>} tokens.
 */
final class SentencePieceTokenizer extends VocabTokenizer
{
    private static final char SPACE_ESCAPE = '\u2581';

    private final int[] byteTokens;

    private SentencePieceTokenizer(final Vocabulary vocab, final SpecialTokens specials,
        final SpecialTokenSplitter splitter, final TokenizerFlags flags)
    {
        super(vocab, specials, splitter, flags, renderPieces(vocab));
        this.byteTokens = byteTokens(vocab);
    }

    static SentencePieceTokenizer create(final GgufMetadata md)
    {
        final Vocabulary vocab = Vocabulary.fromGguf(md);
        final SpecialTokens specials = SpecialTokens.resolve(md, vocab, 1, 2, 0);
        final SpecialTokenSplitter splitter = SpecialTokenSplitter.create(vocab, md);
        return new SentencePieceTokenizer(vocab, specials, splitter, TokenizerFlags.fromGguf(md, true, false, true));
    }

    /** For each byte, the {@code <0xXX>} token, else the token whose text is that single (ASCII) byte, else -1. */
    private static int[] byteTokens(final Vocabulary vocab)
    {
        final int[] tokens = new int[256];
        for (int b = 0; b < 256; b++)
        {
            int id = vocab.id(String.format("<0x%02X>", b));
            if (id < 0 && b < 0x80)
            {
                id = vocab.id(String.valueOf((char)b));
            }
            tokens[b] = id;
        }
        return tokens;
    }

    /** llama.cpp's token-to-piece for SPM vocabularies, without special rendering. */
    private static byte[][] renderPieces(final Vocabulary vocab)
    {
        final byte[][] pieces = new byte[vocab.size()][];
        for (int id = 0; id < pieces.length; id++)
        {
            final int attr = vocab.attr(id);
            final String text = vocab.text(id);
            if ((attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) != 0)
            {
                pieces[id] = new byte[0];
            }
            else if ((attr & TokenAttr.USER_DEFINED) != 0)
            {
                pieces[id] = text.getBytes(StandardCharsets.UTF_8);
            }
            else if ((attr & TokenAttr.NORMAL) != 0)
            {
                pieces[id] = text.replace(SPACE_ESCAPE, ' ').getBytes(StandardCharsets.UTF_8);
            }
            else if ((attr & TokenAttr.BYTE) != 0)
            {
                pieces[id] = new byte[]{byteValue(text)};
            }
            else
            {
                pieces[id] = new byte[0];
            }
        }
        return pieces;
    }

    /** The byte of a {@code <0xXX>} text: like llama.cpp's {@code strtol(text.substr(3, 2), 16)}, 0 when not hex. */
    private static byte byteValue(final String text)
    {
        int value = 0;
        for (int i = 3; i < Math.min(5, text.length()); i++)
        {
            final int digit = Character.digit(text.charAt(i), 16);
            if (digit < 0)
            {
                break;
            }
            value = value * 16 + digit;
        }
        return (byte)value;
    }

    @Override
    void encodeFragments(final String text, final List<SpecialTokenSplitter.Fragment> fragments, final IntArrayList out)
    {
        boolean afterSpecial = true;
        for (final SpecialTokenSplitter.Fragment fragment : fragments)
        {
            if (fragment.isText())
            {
                final String piece = text.substring(fragment.start(), fragment.end());
                tokenize(afterSpecial && addsSpacePrefix() ? " " + piece : piece, out);
                afterSpecial = false;
            }
            else
            {
                out.addInt(fragment.token());
                afterSpecial = true;
            }
        }
    }

    private void tokenize(final String raw, final IntArrayList out)
    {
        final String text = raw.replace(' ', SPACE_ESCAPE);
        final Symbols symbols = Symbols.ofCodePoints(text);
        final int n = symbols.count();
        if (n == 0)
        {
            return;
        }
        final PriorityQueue<Bigram> queue = new PriorityQueue<>(Math.max(1, n), SentencePieceTokenizer::compare);
        for (int i = 1; i < n; i++)
        {
            offer(text, symbols, i - 1, i, queue);
        }
        while (!queue.isEmpty())
        {
            final Bigram bigram = queue.poll();
            final int left = bigram.left();
            final int right = bigram.right();
            if (symbols.length(left) == 0 || symbols.length(right) == 0 ||
                symbols.length(left) + symbols.length(right) != bigram.size())
            {
                continue; // one side was merged since this pair was queued
            }
            symbols.mergeWithNext(left);
            offer(text, symbols, symbols.prev(left), left, queue);
            offer(text, symbols, left, symbols.next(left), queue);
        }
        for (int i = 0; i != -1; i = symbols.next(i))
        {
            emit(text.substring(symbols.start(i), symbols.start(i) + symbols.length(i)), out);
        }
    }

    private void offer(final String text, final Symbols symbols, final int left, final int right,
        final PriorityQueue<Bigram> queue)
    {
        if (left < 0 || right < 0)
        {
            return;
        }
        final int start = symbols.start(left);
        final int size = symbols.length(left) + symbols.length(right);
        final int token = vocab.id(text.substring(start, start + size));
        if (token >= 0)
        {
            queue.add(new Bigram(left, right, vocab.score(token), size));
        }
    }

    /**
     * A finished piece is always a token or a single code point (merges only make tokens), so llama.cpp's
     * "resegment" of non-token merges never has work to do; a code point without a token becomes byte tokens.
     */
    private void emit(final String piece, final IntArrayList out)
    {
        final int token = vocab.id(piece);
        if (token >= 0)
        {
            out.addInt(token);
            return;
        }
        for (final byte b : piece.getBytes(StandardCharsets.UTF_8))
        {
            out.addInt(byteToken(b & 0xFF));
        }
    }

    private int byteToken(final int b)
    {
        final int token = byteTokens[b];
        if (token >= 0)
        {
            return token;
        }
        if (specials.unk() >= 0)
        {
            return specials.unk(); // llama.cpp aborts here; a missing byte token is a broken vocabulary
        }
        throw new IllegalStateException(
            String.format("the vocabulary has no byte token <0x%02X> and no unknown token", b));
    }

    /** Highest score first, then leftmost (llama.cpp's {@code llm_bigram_spm::comparator}). */
    private static int compare(final Bigram a, final Bigram b)
    {
        if (a.score() != b.score())
        {
            return a.score() > b.score() ? -1 : 1;
        }
        return Integer.compare(a.left(), b.left());
    }

    /** A candidate merge of two adjacent symbols into a token of the given score; size is the merged length. */
    private record Bigram(int left, int right, float score, int size)
    {
    }
}
