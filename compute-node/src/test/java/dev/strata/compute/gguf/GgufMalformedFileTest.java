package dev.strata.compute.gguf;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GgufMalformedFileTest
{
    private static final int F32 = GgmlType.F32.id();

    @TempDir
    Path dir;

    /** Asserts that parsing fails with a GgufFormatException whose message contains every fragment. */
    private static GgufFormatException rejects(final GgufBytes image, final String... fragments)
    {
        final GgufFormatException ex = assertThrows(GgufFormatException.class, image::parse);
        for (final String fragment : fragments)
        {
            assertTrue(ex.getMessage().contains(fragment), "expected \"" + fragment + "\" in: " + ex.getMessage());
        }
        return ex;
    }

    /** One F32 tensor of {@code n} elements, properly laid out. */
    private static GgufBytes oneTensorFile(final String name, final long[] dims, final int type, final long offset,
        final int dataBytes)
    {
        return GgufBytes.header(3, 1, 0).tensor(name, dims, type, offset).padTo(32).zeros(dataBytes);
    }

    @Test
    void shouldAcceptTheHandAssembledBaseline()
    {
        try (GgufFile f = oneTensorFile("t", new long[]{8, 2}, F32, 0, 64).parse())
        {
            assertEquals(64, f.tensor("t").byteSize());
            assertEquals(2, f.tensor("t").rowCount());
        }
    }

    @Test
    void shouldRejectWrongMagic()
    {
        final GgufBytes image = new GgufBytes().i32(0x4C4D4747).i32(3).i64(0).i64(0);
        rejects(image, "not a GGUF file", "magic 0x4c4d4747");
    }

    @Test
    void shouldRejectVersionsOtherThanTwoAndThree()
    {
        rejects(GgufBytes.header(1, 0, 0), "unsupported GGUF version 1");
        rejects(GgufBytes.header(4, 0, 0), "unsupported GGUF version 4");
        GgufBytes.header(2, 0, 0).parse().close();
    }

    @Test
    void shouldRejectAbsurdTensorAndMetadataCounts()
    {
        rejects(GgufBytes.header(3, 1L << 40, 0).zeros(64), "absurd tensor count 1099511627776");
        rejects(GgufBytes.header(3, -1, 0).zeros(64), "absurd tensor count -1");
        rejects(GgufBytes.header(3, 0, Long.MAX_VALUE).zeros(64), "absurd metadata count");
    }

    @Test
    void shouldRejectAbsurdStringLengths()
    {
        rejects(GgufBytes.header(3, 0, 1).i64(1L << 40).zeros(32), "metadata key #0", "absurd length 1099511627776");
        rejects(GgufBytes.header(3, 0, 1).i64(-5).zeros(32), "absurd length -5");
        rejects(GgufBytes.header(3, 0, 1).str("general.name").i32(GgufValueType.STRING.id()).i64(Long.MAX_VALUE)
            .zeros(32), "general.name", "absurd length");
        rejects(GgufBytes.header(3, 1, 0).i64(1L << 50).zeros(64), "name of tensor #0", "absurd length");
    }

    @Test
    void shouldRejectAbsurdArrayLengths()
    {
        rejects(GgufBytes.header(3, 0, 1).str("tokenizer.ggml.scores").i32(GgufValueType.ARRAY.id())
            .i32(GgufValueType.FLOAT32.id()).i64(1L << 40).zeros(64), "tokenizer.ggml.scores", "absurd length");
        rejects(GgufBytes.header(3, 0, 1).str("tokenizer.ggml.tokens").i32(GgufValueType.ARRAY.id())
            .i32(GgufValueType.STRING.id()).i64(1_000_000).zeros(64), "tokenizer.ggml.tokens", "absurd length 1000000");
        rejects(GgufBytes.header(3, 0, 1).str("a").i32(GgufValueType.ARRAY.id())
            .i32(GgufValueType.INT32.id()).i64(-1).zeros(64), "absurd length -1");
    }

    @Test
    void shouldRejectAnArrayLongerThanAJavaArrayInAHugeFile() throws IOException
    {
        final byte[] header = GgufBytes.header(3, 0, 1).str("a").i32(GgufValueType.ARRAY.id())
            .i32(GgufValueType.UINT8.id()).i64((1L << 31) + 5).bytes();
        final Path file = dir.resolve("huge.gguf");
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw"))
        {
            raf.write(header);
            raf.setLength(3L << 30); // sparse: enough bytes remain for the count, but no Java array holds it
        }
        final GgufFormatException ex = assertThrows(GgufFormatException.class, () -> GgufFile.open(file));
        assertTrue(ex.getMessage().contains("absurd length 2147483653"), ex.getMessage());
    }

    @Test
    void shouldRejectUnknownMetadataTypes()
    {
        rejects(GgufBytes.header(3, 0, 1).str("k").i32(13).zeros(16), "metadata k", "unknown type 13");
        rejects(GgufBytes.header(3, 0, 1).str("k").i32(GgufValueType.ARRAY.id()).i32(77).i64(0).zeros(16),
            "unknown element type 77");
    }

    @Test
    void shouldRejectTensorsWithMoreThanFourOrNoDimensions()
    {
        rejects(oneTensorFile("five", new long[]{1, 1, 1, 1, 1}, F32, 0, 32), "tensor five has 5 dimensions");
        rejects(oneTensorFile("none", new long[0], F32, 0, 32), "tensor none has 0 dimensions");
        oneTensorFile("four", new long[]{1, 2, 1, 2}, F32, 0, 32).parse().close();
    }

    @Test
    void shouldRejectZeroAndNegativeDimensions()
    {
        rejects(oneTensorFile("t", new long[]{8, 0}, F32, 0, 32), "tensor t has dimension 1 = 0");
        rejects(oneTensorFile("t", new long[]{-4}, F32, 0, 32), "tensor t has dimension 0 = -4");
    }

    @Test
    void shouldRejectShapesWhoseSizeOverflows()
    {
        rejects(oneTensorFile("t", new long[]{1L << 32, 1L << 32}, F32, 0, 32), "tensor t", "absurd shape");
        rejects(oneTensorFile("t", new long[]{1L << 62}, F32, 0, 32), "tensor t", "absurdly large");
        rejects(oneTensorFile("t", new long[]{Long.MAX_VALUE, 2}, F32, 0, 32), "tensor t", "absurd shape");
    }

    @Test
    void shouldRejectUnknownGgmlTypeIds()
    {
        rejects(oneTensorFile("t", new long[]{32}, 99, 0, 128), "tensor t has unknown ggml type id 99");
        rejects(oneTensorFile("t", new long[]{32}, 4, 0, 128), "unknown ggml type id 4");
        rejects(oneTensorFile("t", new long[]{32}, -1, 0, 128), "unknown ggml type id -1");
    }

    @Test
    void shouldRejectRowsThatAreNotWholeBlocks()
    {
        rejects(oneTensorFile("t", new long[]{48, 1}, GgmlType.Q8_0.id(), 0, 128), "row length 48",
            "block size 32");
    }

    @Test
    void shouldRejectUnalignedTensorOffsets()
    {
        rejects(oneTensorFile("t", new long[]{4}, F32, 16, 64), "tensor t has offset 16",
            "not a multiple of the alignment 32");
        rejects(oneTensorFile("t", new long[]{4}, F32, -32, 64), "offset -32");
        final GgufBytes aligned64 = GgufBytes.header(3, 1, 1).kvU32("general.alignment", 64)
            .tensor("t", new long[]{4}, F32, 32).padTo(64).zeros(128);
        rejects(aligned64, "offset 32", "alignment 64");
    }

    @Test
    void shouldRejectAlignmentsThatAreNotPowersOfTwo()
    {
        rejects(GgufBytes.header(3, 0, 1).kvU32("general.alignment", 48), "general.alignment=48",
            "not a positive power of two");
        rejects(GgufBytes.header(3, 0, 1).kvU32("general.alignment", 0), "general.alignment=0");
        rejects(GgufBytes.header(3, 0, 1).kvString("general.alignment", "32"), "general.alignment", "STRING");
    }

    @Test
    void shouldRejectATensorExtendingPastTheEndOfTheFile()
    {
        rejects(oneTensorFile("t", new long[]{16}, F32, 0, 63), "truncated file", "tensor t ends at byte",
            "the file has");
        rejects(oneTensorFile("t", new long[]{16}, F32, 1L << 40, 64), "truncated file", "tensor t");
    }

    @Test
    void shouldRejectATensorWhoseOffsetPlusSizeOverflows()
    {
        // offset + size wraps past 2^64 to a small positive end inside the file
        final GgufBytes image = GgufBytes.header(3, 1, 1).kvString("general.name", "x".repeat(40))
            .tensor("t", new long[]{(1L << 61) - 1}, F32, Long.MAX_VALUE - 63).padTo(32).zeros(64);
        rejects(image, "tensor t");
    }

    @Test
    void shouldRejectDuplicateTensorNames()
    {
        final GgufBytes image = GgufBytes.header(3, 2, 0).tensor("blk.0.attn_q.weight", new long[]{8}, F32, 0)
            .tensor("blk.0.attn_q.weight", new long[]{8}, F32, 32).padTo(32).zeros(64);
        rejects(image, "duplicate tensor name blk.0.attn_q.weight");
    }

    @Test
    void shouldNameTheFileInErrorsFromOpen() throws IOException
    {
        final Path file = dir.resolve("bad-magic.gguf");
        Files.write(file, new GgufBytes().i32(0x12345678).i32(3).i64(0).i64(0).bytes());
        final GgufFormatException ex = assertThrows(GgufFormatException.class, () -> GgufFile.open(file));
        assertTrue(ex.getMessage().startsWith(file + ": not a GGUF file"), ex.getMessage());
        final Path empty = dir.resolve("empty.gguf");
        Files.write(empty, new byte[0]);
        final GgufFormatException tooShort = assertThrows(GgufFormatException.class, () -> GgufFile.open(empty));
        assertTrue(tooShort.getMessage().contains("too short"), tooShort.getMessage());
    }
}
