package dev.strata.compute.tensor;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class WeightTensorTest
{
    private static final long SEED = 20250220L;

    private static void assertNoFailures(final List<String> failures)
    {
        assertTrue(failures.isEmpty(), () -> failures.size() + " mismatches (LANES=" + Vectors.LANES + ", VECTOR_OK=" +
            Vectors.VECTOR_OK + "), first: " + String.join("\n", failures.subList(0, Math.min(10, failures.size()))));
    }

    @Test
    void referenceHalfDecoderShouldAgreeWithTheJdkOnEveryFiniteHalf()
    {
        for (int bits = 0; bits < 1 << 16; bits++)
        {
            final float expected = Float.float16ToFloat((short)bits);
            final float actual = ScalarReference.half(bits);
            if (!Float.isNaN(expected))
            {
                assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(actual), "half 0x" + Integer.toHexString(bits));
            }
        }
    }

    @Test
    void shouldMatchScalarReferenceForF32()
    {
        assertNoFailures(KernelConformance.check(GgmlType.F32, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForF16IncludingSubnormalsAndSignedZeros()
    {
        assertNoFailures(KernelConformance.check(GgmlType.F16, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForBF16()
    {
        assertNoFailures(KernelConformance.check(GgmlType.BF16, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForQ8_0()
    {
        assertNoFailures(KernelConformance.check(GgmlType.Q8_0, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForQ4_0()
    {
        assertNoFailures(KernelConformance.check(GgmlType.Q4_0, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForQ4_K()
    {
        assertNoFailures(KernelConformance.check(GgmlType.Q4_K, SEED));
    }

    @Test
    void shouldMatchScalarReferenceForQ6_K()
    {
        assertNoFailures(KernelConformance.check(GgmlType.Q6_K, SEED));
    }

    @Test
    void shouldMatchScalarReferenceWithManySeeds()
    {
        for (long seed = 1; seed <= 5; seed++)
        {
            assertNoFailures(KernelConformance.checkAll(seed));
        }
    }

    @Test
    void privateScalarDotFallbacksShouldMatchScalarReference() throws Exception
    {
        final Random rnd = new Random(SEED);
        for (final GgmlType type : new GgmlType[]{GgmlType.Q8_0, GgmlType.Q4_0})
        {
            for (final int[] shape : KernelConformance.shapes(type))
            {
                final byte[] bytes = KernelConformance.randomData(type, shape[0], shape[1], rnd);
                final WeightTensor t = WeightTensor.of("t", type, MemorySegment.ofArray(bytes), shape[0], shape[1]);
                final Method dotScalar = t.getClass().getDeclaredMethod("dotScalar", int.class, float[].class, int.class);
                dotScalar.setAccessible(true);
                final int rowBytes = ScalarReference.rowBytes(type, shape[1]);
                for (int r = 0; r < shape[0]; r++)
                {
                    final float[] w = ScalarReference.dequantizeRow(type, bytes, r * rowBytes, shape[1]);
                    final float[] x = KernelConformance.randomVector(rnd, 7, shape[1]);
                    final float actual = (float)dotScalar.invoke(t, r, x, 7);
                    final String error = KernelConformance.compareDot(actual, w, x, 7);
                    assertEquals(null, error, type + " " + shape[0] + "x" + shape[1] + " row " + r + " dotScalar");
                }
            }
        }
    }

    @Test
    void shouldMatchScalarReferenceOnTheScalarFallbackPathWith128BitVectors() throws Exception
    {
        final String output = runChild("-XX:MaxVectorSize=16");
        assertTrue(output.contains("VECTOR_OK=false"), "the child JVM should have taken the scalar path:\n" + output);
    }

    @Test
    void shouldMatchScalarReferenceWith256BitVectors() throws Exception
    {
        final String output = runChild("-XX:MaxVectorSize=32");
        Assumptions.assumeTrue(output.contains("LANES=8 VECTOR_OK=true"),
            "skipped: this CPU gives no 8-lane float vectors under -XX:MaxVectorSize=32:\n" + output);
    }

    /** Runs {@link KernelConformance#main} in a child JVM with {@code vmOption}; fails unless it passes. */
    private static String runChild(final String vmOption) throws Exception
    {
        final String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        final String classPath = location(KernelConformance.class) + java.io.File.pathSeparator + location(WeightTensor.class);
        final List<String> command = new ArrayList<>(List.of(javaBin, vmOption, "--add-modules=jdk.incubator.vector",
            "-cp", classPath, KernelConformance.class.getName()));
        final Path log = Files.createTempFile("kernel-conformance", ".log");
        final Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        final String output;
        try
        {
            final boolean exited = process.waitFor(180, TimeUnit.SECONDS);
            output = Files.readString(log);
            assertTrue(exited, "child JVM " + vmOption + " timed out:\n" + output);
        }
        finally
        {
            process.destroyForcibly();
            Files.deleteIfExists(log);
        }
        assertEquals(0, process.exitValue(), "child JVM " + vmOption + " failed:\n" + output);
        assertTrue(output.contains("\nOK"), output);
        return output;
    }

    private static String location(final Class<?> type) throws Exception
    {
        return Path.of(type.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    }

    @Test
    void shouldRejectTypesWithoutKernelsNamingTheType()
    {
        final MemorySegment data = MemorySegment.ofArray(new byte[4096]);
        final UnsupportedTensorTypeException ex = assertThrows(UnsupportedTensorTypeException.class,
            () -> WeightTensor.of("blk.0.ffn_down.weight", GgmlType.Q5_K, data, 1, 256));
        assertTrue(ex.getMessage().contains("Q5_K"), ex.getMessage());
        assertTrue(ex.getMessage().contains("blk.0.ffn_down.weight"), ex.getMessage());
    }

    @Test
    void shouldHaveKernelsExactlyForTheTypesMarkedSupported()
    {
        final MemorySegment data = MemorySegment.ofArray(new byte[4096]);
        for (final GgmlType type : GgmlType.values())
        {
            if (type.supported())
            {
                assertDoesNotThrow(() -> WeightTensor.of("t", type, data, 1, type.blockSize()), type.toString());
            }
            else
            {
                final UnsupportedTensorTypeException ex = assertThrows(UnsupportedTensorTypeException.class,
                    () -> WeightTensor.of("t", type, data, 1, type.blockSize()), type.toString());
                assertTrue(ex.getMessage().contains(type.name()), ex.getMessage());
            }
        }
    }

    @Test
    void shouldRejectRowsThatAreNotWholeBlocksOrDataThatIsTooSmall()
    {
        final MemorySegment data = MemorySegment.ofArray(new byte[4096]);
        final IllegalArgumentException partial = assertThrows(IllegalArgumentException.class,
            () -> WeightTensor.of("t", GgmlType.Q8_0, data, 1, 48));
        assertTrue(partial.getMessage().contains("48"), partial.getMessage());
        final IllegalArgumentException small = assertThrows(IllegalArgumentException.class,
            () -> WeightTensor.of("t", GgmlType.F32, MemorySegment.ofArray(new byte[4 * 17 - 1]), 1, 17));
        assertTrue(small.getMessage().contains("needs 68 bytes"), small.getMessage());
    }

    @Test
    void shouldReportGeometry()
    {
        final MemorySegment data = MemorySegment.ofArray(new byte[3 * 210 * 2]);
        final WeightTensor t = WeightTensor.of("q6", GgmlType.Q6_K, data, 3, 512);
        assertEquals("q6", t.name());
        assertEquals(GgmlType.Q6_K, t.type());
        assertEquals(3, t.rows());
        assertEquals(512, t.cols());
        assertEquals(3 * 2 * 210, t.byteSize());
    }

    @Test
    void shouldDequantizeEveryTensorOfTheSharedModelLikeTheReference() throws IOException
    {
        final String configured = System.getProperty("strata.shared.models");
        // surefire sets the property to <project>/../shared/models; from a module directory that is ../../shared
        final Path model = (configured != null ? Path.of(configured) : Path.of("").toAbsolutePath().resolve("../../shared/models").normalize()).resolve("stories260K.gguf");
        Assumptions.assumeTrue(Files.isRegularFile(model), "skipped: shared model " + model + " is absent");
        final Random rnd = new Random(SEED);
        int checked = 0;
        try (GgufFile file = GgufFile.open(model))
        {
            for (final GgufTensorInfo info : file.tensors().values())
            {
                if (!info.type().supported() || info.shape().length > 2)
                {
                    continue;
                }
                final MemorySegment data = file.tensorData(info);
                final WeightTensor t = WeightTensor.of(info.name(), info.type(), data, (int)info.rowCount(),
                    (int)info.rowLength());
                final byte[] bytes = data.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                assertNoFailures(KernelConformance.checkTensor(t, bytes, rnd));
                checked++;
            }
        }
        assertFalse(checked == 0, "no tensor of a supported type in " + model);
    }

    /** Every finite half float, positive and negative, normal and subnormal, converts exactly as the JDK's. */
    @Test
    void shouldConvertEveryFiniteHalfFloatExactly()
    {
        final int finite = 2 * 31 * 1024; // exponent 31 (inf, NaN) excluded: weights hold none
        final java.nio.ByteBuffer bytes = java.nio.ByteBuffer.allocate(2 * finite).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int sign = 0; sign < 2; sign++)
        {
            for (int h = 0; h < 31 * 1024; h++)
            {
                bytes.putShort((short)(sign << 15 | h));
            }
        }
        final WeightTensor t = WeightTensor.of("t", GgmlType.F16, MemorySegment.ofArray(bytes.array()), 1, finite);
        final float[] out = new float[finite];
        t.dequantize(0, 0, finite, out, 0);
        final float[] onehot = new float[finite];
        for (int i = 0; i < finite; i++)
        {
            final float expected = Float.float16ToFloat(bytes.getShort(2 * i));
            assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(out[i]),
                "half 0x" + Integer.toHexString(bytes.getShort(2 * i) & 0xffff) + ": " + expected + " vs " + out[i]);
        }
        // the dot kernel converts the same way: a one-hot activation picks single weights out
        for (final int i : new int[]{0, 1, 1023, 1024, 15 * 1024, 31 * 1024 - 1, 31 * 1024, 31 * 1024 + 5, finite - 1})
        {
            onehot[i] = 1f;
            assertEquals(Float.float16ToFloat(bytes.getShort(2 * i)), t.dot(0, onehot, 0), 0f, "dot picking weight " + i);
            onehot[i] = 0f;
        }
    }
}
