package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.gguf.GgufValueType;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Choosing and configuring the tokenizer from GGUF metadata, on small in-memory vocabularies. */
class TokenizerFactoryTest
{
    /** A byte-level vocabulary: the 256 byte characters, then the given extra tokens (type NORMAL unless given). */
    private static GgufMetadata byteLevelVocab(final String pre, final List<String> extra, final List<Integer> extraTypes,
        final String... merges)
    {
        final List<String> tokens = new ArrayList<>();
        final List<Integer> types = new ArrayList<>();
        for (int b = 0; b < 256; b++)
        {
            tokens.add(String.valueOf(ByteLevel.encode(b)));
            types.add(TokenAttr.TYPE_NORMAL);
        }
        tokens.addAll(extra);
        types.addAll(extraTypes);
        final GgufMetadata md = new GgufMetadata();
        md.putString("tokenizer.ggml.model", "gpt2");
        if (pre != null)
        {
            md.putString("tokenizer.ggml.pre", pre);
        }
        md.putArray("tokenizer.ggml.tokens", GgufValueType.STRING, tokens.toArray(String[]::new));
        md.putArray("tokenizer.ggml.token_type", GgufValueType.INT32, types.stream().mapToInt(Integer::intValue).toArray());
        md.putArray("tokenizer.ggml.merges", GgufValueType.STRING, merges);
        return md;
    }

    @Test
    void unknownTokenizerModelIsRejectedByName()
    {
        final GgufMetadata md = new GgufMetadata().putString("tokenizer.ggml.model", "bert");
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromGguf(md));
        assertTrue(ex.getMessage().contains("'bert'") && ex.getMessage().contains("tokenizer.ggml.model"), ex.getMessage());
        final IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
            () -> Tokenizer.fromGguf(new GgufMetadata()));
        assertTrue(missing.getMessage().contains("tokenizer.ggml.model"), missing.getMessage());
    }

    @Test
    void mergesApplyInRankOrder()
    {
        final int base = 256;
        final GgufMetadata md = byteLevelVocab("gpt-2", List.of("ab", "bc", "abc"), List.of(1, 1, 1), "b c", "a b", "a bc");
        final Tokenizer tokenizer = Tokenizer.fromGguf(md);
        // "b c" has rank 0, so "abc" is a + bc, then "a bc" merges
        assertArrayEquals(new int[]{base + 2}, tokenizer.encode("abc", false, false));
        assertArrayEquals(new int[]{base, base}, tokenizer.encode("abab", false, false));
        assertEquals("abcabab", tokenizer.decode(tokenizer.encode("abcabab", false, false)));
    }

    @Test
    void llama3StyleVocabulariesTakeWholeWordTokensWithoutMerges()
    {
        final GgufMetadata gpt2 = byteLevelVocab("gpt-2", List.of("xyz"), List.of(1));
        final GgufMetadata llama3 = byteLevelVocab("llama-bpe", List.of("xyz"), List.of(1));
        assertEquals(3, Tokenizer.fromGguf(gpt2).encode("xyz", false, false).length);
        assertArrayEquals(new int[]{256}, Tokenizer.fromGguf(llama3).encode("xyz", false, false));
    }

    @Test
    void bosIsAddedOnlyWhenTheVocabularyAsksForIt()
    {
        final GgufMetadata md = byteLevelVocab("qwen2", List.of("<|endoftext|>"), List.of(3));
        md.putUInt32("tokenizer.ggml.bos_token_id", 256);
        md.putUInt32("tokenizer.ggml.eos_token_id", 256);
        assertArrayEquals(new int[]{idOf('h')}, Tokenizer.fromGguf(md).encode("h", true, false), "gpt2 adds no BOS by default");
        md.putBool("tokenizer.ggml.add_bos_token", true);
        assertArrayEquals(new int[]{256, idOf('h')}, Tokenizer.fromGguf(md).encode("h", true, false));
        md.putBool("tokenizer.ggml.add_eos_token", true);
        assertArrayEquals(new int[]{256, idOf('h'), 256}, Tokenizer.fromGguf(md).encode("h", true, false));
        assertArrayEquals(new int[]{idOf('h')}, Tokenizer.fromGguf(md).encode("h", false, false));
    }

    private static int idOf(final char c)
    {
        return c; // in byteLevelVocab, printable ASCII byte b is token b
    }

    @Test
    void turnEndTokensAreGuessedByTextAndTreatedAsControl()
    {
        // <|im_end|> is stored as a NORMAL token; llama.cpp overrides its type to CONTROL
        final GgufMetadata md = byteLevelVocab("qwen2", List.of("<|im_end|>", "<|im_start|>"), List.of(1, 3));
        final Tokenizer tokenizer = Tokenizer.fromGguf(md);
        assertTrue(tokenizer.isEndOfGeneration(256));
        assertFalse(tokenizer.isEndOfGeneration(257));
        assertArrayEquals(new int[]{257, idOf('h'), 256}, tokenizer.encode("<|im_start|>h<|im_end|>", false, true));
        assertArrayEquals(new byte[0], tokenizer.tokenBytes(256), "now a control token, it renders as nothing");
        assertEquals(11, tokenizer.eosToken(), "without eos_token_id, llama.cpp's gpt2 default id 11 stands");
    }

    @Test
    void idsOutsideTheVocabularyInMetadataKeepTheDefaults()
    {
        final Tokenizer stories = SharedModels.tokenizer(SharedModels.STORIES);
        // stories260K stores seperator/padding ids as 0xFFFFFFFF: they are ignored, as llama.cpp does
        assertEquals(1, stories.bosToken());
        assertEquals(2, stories.eosToken());
    }
}
