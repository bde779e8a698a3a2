package dev.strata.compute.tokenizer;

import org.agrona.collections.IntArrayList;

import dev.strata.compute.gguf.GgufMetadata;

import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.PriorityQueue;
import java.util.Set;

/**
 * The {@code gpt2} (byte-level BPE) tokenizer, as llama.cpp's {@code llm_tokenizer_bpe}.
 * <p>
 * Each text fragment is split into words by the {@link PreTokenizer}; each word's UTF-8 bytes are written with the
 * GPT-2 byte alphabet and split into characters; then the adjacent pair with the lowest merge rank is merged
 * (ties: leftmost first) until no listed merge applies. With {@code ignore_merges} (the llama3 family) a word
 * that is itself a token is emitted whole. A final piece that is not a token falls back to the tokens of its
 * single ASCII characters; its other characters are dropped, as llama.cpp drops them.
 */
final class BytePairTokenizer extends VocabTokenizer
{
    private static final System.Logger LOG = System.getLogger(BytePairTokenizer.class.getName());
    private static final String KEY_PRE = "tokenizer.ggml.pre";
    private static final String KEY_MERGES = "tokenizer.ggml.merges";
    private static final Set<String> IGNORE_MERGES =
        Set.of("llama3", "llama-v3", "llama-bpe", "falcon3", "tekken");
    private static final Set<String> ADD_BOS =
        Set.of("llama3", "llama-v3", "llama-bpe", "falcon3", "tekken", "chameleon");

    private final PreTokenizer preTokenizer;
    private final MergeRanks merges;
    private final boolean ignoreMerges;

    private BytePairTokenizer(final Vocabulary vocab, final SpecialTokens specials,
        final SpecialTokenSplitter splitter, final TokenizerFlags flags, final PreTokenizer preTokenizer,
        final MergeRanks merges, final boolean ignoreMerges)
    {
        super(vocab, specials, splitter, flags, renderPieces(vocab));
        this.preTokenizer = preTokenizer;
        this.merges = merges;
        this.ignoreMerges = ignoreMerges;
    }

    static BytePairTokenizer create(final GgufMetadata md)
    {
        final String pre = md.getString(KEY_PRE, null);
        final PreTokenizer preTokenizer = PreTokenizer.forName(pre);
        if (!preTokenizer.isExact())
        {
            LOG.log(Level.WARNING, "pre-tokenizer ''{0}'' ({1}) is not implemented; using ''default'', so tokens may " +
                "differ from llama.cpp''s", pre, KEY_PRE);
        }
        if (!md.contains(KEY_MERGES))
        {
            throw new IllegalArgumentException("gpt2 tokenizer without " + KEY_MERGES + " in the GGUF metadata");
        }
        final MergeRanks merges = MergeRanks.of(md.getStringArray(KEY_MERGES));
        final Vocabulary vocab = Vocabulary.fromGguf(md);
        final int defaultBos = "chatglm-bpe".equals(pre) ? -1 : 11;
        final SpecialTokens specials = SpecialTokens.resolve(md, vocab, defaultBos, 11, -1);
        final SpecialTokenSplitter splitter = SpecialTokenSplitter.create(vocab, md);
        final TokenizerFlags flags = TokenizerFlags.fromGguf(md, pre != null && ADD_BOS.contains(pre), false, false);
        return new BytePairTokenizer(vocab, specials, splitter, flags, preTokenizer, merges,
            pre != null && IGNORE_MERGES.contains(pre));
    }

    /** llama.cpp's token-to-piece for BPE vocabularies, without special rendering. */
    private static byte[][] renderPieces(final Vocabulary vocab)
    {
        final byte[][] pieces = new byte[vocab.size()][];
        for (int id = 0; id < pieces.length; id++)
        {
            final int attr = vocab.attr(id);
            if ((attr & (TokenAttr.CONTROL | TokenAttr.UNKNOWN)) != 0)
            {
                pieces[id] = new byte[0];
            }
            else if ((attr & TokenAttr.USER_DEFINED) != 0)
            {
                pieces[id] = vocab.text(id).getBytes(StandardCharsets.UTF_8);
            }
            else if ((attr & TokenAttr.NORMAL) != 0)
            {
                pieces[id] = ByteLevel.decodeText(vocab.text(id));
            }
            else
            {
                pieces[id] = new byte[0];
            }
        }
        return pieces;
    }

    @Override
    void encodeFragments(final String text, final List<SpecialTokenSplitter.Fragment> fragments, final IntArrayList out)
    {
        final StringBuilder word = new StringBuilder();
        for (final SpecialTokenSplitter.Fragment fragment : fragments)
        {
            if (!fragment.isText())
            {
                out.addInt(fragment.token());
                continue;
            }
            final int[] cps = text.substring(fragment.start(), fragment.end()).codePoints().toArray();
            final IntArrayList lengths = preTokenizer.splitLengths(cps);
            int start = 0;
            for (int i = 0; i < lengths.size(); i++)
            {
                word.setLength(0);
                ByteLevel.encodeUtf8(cps, start, start + lengths.getInt(i), word);
                encodeWord(word.toString(), out);
                start += lengths.getInt(i);
            }
        }
    }

    private void encodeWord(final String word, final IntArrayList out)
    {
        if (ignoreMerges)
        {
            final int token = vocab.id(word);
            if (token >= 0)
            {
                out.addInt(token);
                return;
            }
        }
        final Symbols symbols = Symbols.ofCodePoints(word);
        final PriorityQueue<Bigram> queue =
            new PriorityQueue<>(Math.max(1, symbols.count()), BytePairTokenizer::compare);
        for (int i = 1; i < symbols.count(); i++)
        {
            offer(word, symbols, i - 1, i, queue);
        }
        while (!queue.isEmpty())
        {
            final Bigram bigram = queue.poll();
            final int left = bigram.left();
            final int right = bigram.right();
            // the left symbol only ever grows by absorbing its right neighbour, so an unchanged total length
            // means both sides are still the strings this pair was ranked for
            if (symbols.length(left) == 0 || symbols.length(right) == 0 ||
                symbols.length(left) + symbols.length(right) != bigram.size())
            {
                continue;
            }
            symbols.mergeWithNext(left);
            offer(word, symbols, symbols.prev(left), left, queue);
            offer(word, symbols, left, symbols.next(left), queue);
        }
        for (int i = 0; i != -1 && symbols.count() > 0; i = symbols.next(i))
        {
            emit(word.substring(symbols.start(i), symbols.start(i) + symbols.length(i)), out);
        }
    }

    private void offer(final String word, final Symbols symbols, final int left, final int right,
        final PriorityQueue<Bigram> queue)
    {
        if (left < 0 || right < 0)
        {
            return;
        }
        final int leftStart = symbols.start(left);
        final int rightStart = symbols.start(right);
        final int rightEnd = rightStart + symbols.length(right);
        final int rank = merges.rank(word.substring(leftStart, rightStart), word.substring(rightStart, rightEnd));
        if (rank >= 0)
        {
            queue.add(new Bigram(left, right, rank, rightEnd - leftStart));
        }
    }

    private void emit(final String piece, final IntArrayList out)
    {
        final int token = vocab.id(piece);
        if (token >= 0)
        {
            out.addInt(token);
            return;
        }
        // llama.cpp looks each UTF-8 byte up as a one-byte text: only ASCII bytes can be found
        for (int i = 0; i < piece.length(); i++)
        {
            final char c = piece.charAt(i);
            if (c < 0x80)
            {
                final int byteToken = vocab.id(String.valueOf(c));
                if (byteToken >= 0)
                {
                    out.addInt(byteToken);
                }
            }
        }
    }

    /** Lowest rank first, then leftmost (llama.cpp's {@code llm_bigram_bpe::comparator}). */
    private static int compare(final Bigram a, final Bigram b)
    {
        return a.rank() != b.rank() ? Integer.compare(a.rank(), b.rank()) : Integer.compare(a.left(), b.left());
    }

    /** A candidate merge of two adjacent symbols; size is the merged length in chars. */
    private record Bigram(int left, int right, int rank, int size)
    {
    }
}
