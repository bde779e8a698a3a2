package dev.strata.transport;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BlockIdTest
{
    @Test
    void shouldBeSha256OfContentPlusLength()
    {
        // FIPS 180-2 test vector: SHA-256("abc")
        final BlockId id = BlockId.of("abc".getBytes(StandardCharsets.US_ASCII));
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id.hex());
        assertEquals(3, id.length());
        assertEquals(id, BlockId.parse(id.toString()));
        assertEquals(id, BlockId.of(MemorySegment.ofArray("abc".getBytes(StandardCharsets.US_ASCII))));
    }

    @Test
    void shouldDetectAnyChangedByte()
    {
        final byte[] content = new byte[3 << 20];
        new java.util.Random(1).nextBytes(content);
        final BlockId id = BlockId.of(content);
        assertTrue(id.matches(MemorySegment.ofArray(content)));
        content[content.length / 2] ^= 1;
        assertFalse(id.matches(MemorySegment.ofArray(content)));
        assertNotEquals(id, BlockId.of(content));
    }

    @Test
    void shouldRejectEmptyAndMalformedIds()
    {
        assertThrows(IllegalArgumentException.class, () -> BlockId.of(new byte[0]));
        assertThrows(IllegalArgumentException.class, () -> BlockId.parse("nothex-12"));
        assertThrows(IllegalArgumentException.class, () -> BlockId.parse(HexFormat.of().formatHex(new byte[32]) + "-x"));
    }
}
