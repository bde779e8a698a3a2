package dev.strata.compute.gguf;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

class GgufRoundTripTest
{
    @TempDir
    Path dir;

    /** Every scalar type and arrays of most element types, in the Java representation the reader produces. */
    static GgufMetadata metadata(final Integer alignment)
    {
        final GgufMetadata md = new GgufMetadata();
        md.putString("general.architecture", "test-arch");
        if (alignment != null)
        {
            md.putUInt32("general.alignment", alignment);
        }
        md.put("t.u8", GgufValueType.UINT8, 200);
        md.put("t.i8", GgufValueType.INT8, -100);
        md.put("t.u16", GgufValueType.UINT16, 65000);
        md.put("t.i16", GgufValueType.INT16, -32000);
        md.put("t.u32", GgufValueType.UINT32, 4_000_000_000L);
        md.put("t.i32", GgufValueType.INT32, -2_000_000_000);
        md.put("t.f32", GgufValueType.FLOAT32, 3.25f);
        md.put("t.true", GgufValueType.BOOL, true);
        md.put("t.false", GgufValueType.BOOL, false);
        md.put("t.string", GgufValueType.STRING, "ünïcødé ✓ 日本");
        md.put("t.empty", GgufValueType.STRING, "");
        md.put("t.u64", GgufValueType.UINT64, -1L);
        md.put("t.i64", GgufValueType.INT64, Long.MIN_VALUE);
        md.put("t.f64", GgufValueType.FLOAT64, Math.PI);
        md.putArray("t.strings", GgufValueType.STRING, new String[]{"a", "", "ü✓", "<s>", "▁the"});
        md.putArray("t.floats", GgufValueType.FLOAT32, new float[]{1f, -2.5f, Float.MIN_VALUE, Float.NaN, -0f});
        md.putArray("t.ints", GgufValueType.INT32, new int[]{1, -2, Integer.MAX_VALUE, Integer.MIN_VALUE});
        md.putArray("t.u8s", GgufValueType.UINT8, new int[]{0, 1, 128, 255});
        md.putArray("t.i8s", GgufValueType.INT8, new int[]{-128, 0, 127});
        md.putArray("t.u16s", GgufValueType.UINT16, new int[]{0, 65535});
        md.putArray("t.i16s", GgufValueType.INT16, new int[]{-32768, 32767});
        md.putArray("t.u32s", GgufValueType.UINT32, new int[]{-1, 7});
        md.putArray("t.i64s", GgufValueType.INT64, new long[]{Long.MAX_VALUE, -1L});
        md.putArray("t.u64s", GgufValueType.UINT64, new long[]{-1L, 0L});
        md.putArray("t.f64s", GgufValueType.FLOAT64, new double[]{1e300, -0.0});
        md.putArray("t.bools", GgufValueType.BOOL, new boolean[]{true, false, true});
        md.putArray("t.no_ints", GgufValueType.INT32, new int[0]);
        md.putArray("t.no_strings", GgufValueType.STRING, new String[0]);
        return md;
    }

    record Expected(String name, GgmlType type, long[] shape, byte[] bytes)
    {
    }

    static List<Expected> tensors()
    {
        final Random rnd = new Random(31);
        final List<Expected> list = new ArrayList<>();
        list.add(new Expected("token_embd.weight", GgmlType.Q8_0, new long[]{64, 3}, new byte[3 * 2 * 34]));
        list.add(new Expected("output_norm.weight", GgmlType.F32, new long[]{7}, new byte[28]));
        list.add(new Expected("blk.0.ffn_up.weight", GgmlType.Q4_K, new long[]{256, 2}, new byte[2 * 144]));
        list.add(new Expected("blk.0.cube", GgmlType.F16, new long[]{5, 2, 3}, new byte[60]));
        for (final Expected e : list)
        {
            rnd.nextBytes(e.bytes());
        }
        return list;
    }

    static Path write(final Path file, final GgufMetadata md, final List<Expected> tensors) throws IOException
    {
        final List<GgufWriter.Tensor> out = new ArrayList<>();
        for (final Expected e : tensors)
        {
            out.add(new GgufWriter.Tensor(e.name(), e.type(), e.shape(),
                ch -> GgufWriter.writeFully(ch, ByteBuffer.wrap(e.bytes()))));
        }
        GgufWriter.write(file, md, out);
        return file;
    }

    static void assertSameMetadata(final GgufMetadata expected, final GgufMetadata actual)
    {
        assertEquals(new ArrayList<>(expected.keys()), new ArrayList<>(actual.keys()), "keys in file order");
        for (final String key : expected.keys())
        {
            final GgufMetadata.Entry e = expected.entry(key);
            final GgufMetadata.Entry a = actual.entry(key);
            assertEquals(e.type(), a.type(), key + " type");
            assertEquals(e.elementType(), a.elementType(), key + " element type");
            assertEquals(e.value().getClass(), a.value().getClass(), key + " Java type");
            assertTrue(Objects.deepEquals(e.value(), a.value()),
                key + ": wrote " + Arrays.deepToString(new Object[]{e.value()}) + ", read " +
                    Arrays.deepToString(new Object[]{a.value()}));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {32, 64})
    void shouldReadBackWhatTheWriterWrote(final int alignment) throws IOException
    {
        final GgufMetadata md = metadata(alignment);
        final List<Expected> tensors = tensors();
        final Path file = write(dir.resolve("t" + alignment + ".gguf"), md, tensors);
        assertFalse(Files.exists(dir.resolve("t" + alignment + ".gguf.tmp")), "temporary file left behind");
        try (GgufFile gguf = GgufFile.open(file))
        {
            assertEquals(3, gguf.version());
            assertEquals(alignment, gguf.alignment());
            assertEquals(file, gguf.path());
            assertEquals(0, gguf.dataOffset() % alignment, "data section aligned");
            assertSameMetadata(md, gguf.metadata());
            assertEquals(Long.valueOf(alignment), gguf.metadata().get("general.alignment"));

            assertEquals(tensors.stream().map(Expected::name).toList(), new ArrayList<>(gguf.tensors().keySet()));
            long offset = 0;
            for (final Expected e : tensors)
            {
                final GgufTensorInfo info = gguf.tensor(e.name());
                assertEquals(e.name(), info.name());
                assertEquals(e.type(), info.type(), e.name());
                assertArrayEquals(e.shape(), info.shape(), e.name());
                assertEquals(e.bytes().length, info.byteSize(), e.name());
                assertEquals(offset, info.offset(), e.name() + " offset");
                assertEquals(0, info.offset() % alignment, e.name() + " offset aligned");
                assertEquals(0, (gguf.dataOffset() + info.offset()) % alignment, e.name() + " absolute offset aligned");
                assertArrayEquals(e.bytes(), gguf.tensorData(info).toArray(ValueLayout.JAVA_BYTE), e.name() + " data");
                offset = GgufFile.alignUp(offset + e.bytes().length, alignment);
            }
            assertEquals(gguf.dataOffset() + offset, Files.size(file), "file ends with the padded last tensor");
            final GgufTensorInfo cube = gguf.tensor("blk.0.cube");
            assertEquals(30, cube.elementCount());
            assertEquals(5, cube.rowLength());
            assertEquals(6, cube.rowCount());
        }
    }

    @Test
    void shouldUseTheDefaultAlignmentOf32WithoutGeneralAlignment() throws IOException
    {
        final GgufMetadata md = metadata(null);
        final Path file = write(dir.resolve("default.gguf"), md, tensors());
        try (GgufFile gguf = GgufFile.open(file))
        {
            assertEquals(GgufFile.DEFAULT_ALIGNMENT, gguf.alignment());
            assertEquals(0, gguf.dataOffset() % 32);
            for (final GgufTensorInfo info : gguf.tensors().values())
            {
                assertEquals(0, info.offset() % 32, info.name());
            }
            assertSameMetadata(md, gguf.metadata());
        }
    }

    @Test
    void shouldWriteAFileWithoutTensors() throws IOException
    {
        final GgufMetadata md = new GgufMetadata().putString("general.name", "empty");
        final Path file = write(dir.resolve("empty.gguf"), md, List.of());
        try (GgufFile gguf = GgufFile.open(file))
        {
            assertTrue(gguf.tensors().isEmpty());
            assertEquals("empty", gguf.metadata().getString("general.name"));
        }
    }

    @Test
    void shouldRejectATensorWhoseWriterProducesTheWrongNumberOfBytes() throws IOException
    {
        final Path file = dir.resolve("short.gguf");
        final GgufWriter.Tensor tensor = new GgufWriter.Tensor("t", GgmlType.F32, new long[]{4},
            ch -> GgufWriter.writeFully(ch, ByteBuffer.allocate(12)));
        final IllegalStateException ex = assertThrows(IllegalStateException.class,
            () -> GgufWriter.write(file, new GgufMetadata(), List.of(tensor)));
        assertTrue(ex.getMessage().contains("wrote 12 bytes, expected 16"), ex.getMessage());
        assertFalse(Files.exists(file));
        assertFalse(Files.exists(dir.resolve("short.gguf.tmp")));
    }

    @Test
    void shouldFailCleanlyOnAFileTruncatedAtAnyByte() throws IOException
    {
        final Path full = write(dir.resolve("full.gguf"), metadata(64), tensors());
        final byte[] bytes = Files.readAllBytes(full);
        final long lastEnd;
        try (GgufFile gguf = GgufFile.open(full))
        {
            long end = 0;
            for (final GgufTensorInfo info : gguf.tensors().values())
            {
                end = Math.max(end, gguf.dataOffset() + info.offset() + info.byteSize());
            }
            lastEnd = end;
        }
        final Map<String, Integer> kinds = new LinkedHashMap<>();
        for (int cut = 0; cut < bytes.length; cut++)
        {
            final MemorySegment image = MemorySegment.ofArray(Arrays.copyOf(bytes, cut));
            if (cut >= lastEnd)
            {
                // only padding after the last tensor is missing: still a readable file
                GgufFile.parse(image).close();
                continue;
            }
            try
            {
                GgufFile.parse(image);
                fail("a file cut at byte " + cut + " of " + bytes.length + " was accepted");
            }
            catch (final GgufFormatException ex)
            {
                final String message = ex.getMessage();
                assertTrue(message.matches("(?s).*(truncated|too short|absurd).*"), "cut at " + cut + ": " + message);
                kinds.merge(message.replaceAll("[ :].*", ""), 1, Integer::sum);
            }
            catch (final RuntimeException ex)
            {
                throw new AssertionError("a file cut at byte " + cut + " failed with " + ex, ex);
            }
        }
        assertTrue(kinds.containsKey("truncated"), kinds.toString());
        for (int cut = 0; cut < lastEnd; cut += 7)
        {
            final Path file = dir.resolve("cut" + cut + ".gguf");
            Files.write(file, Arrays.copyOf(bytes, cut));
            final GgufFormatException ex = assertThrows(GgufFormatException.class, () -> GgufFile.open(file),
                "cut at " + cut);
            assertTrue(ex.getMessage().startsWith(file.toString()), "message should name the file: " + ex.getMessage());
            Files.delete(file);
        }
    }
}
