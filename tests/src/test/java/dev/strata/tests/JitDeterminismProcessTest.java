package dev.strata.tests;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.synth.SyntheticModel;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One greedy run gives the same logits, bit for bit, in a JVM whose Vector API code only ever runs its Java
 * fallback (C1 only) and in one where C2 compiled it: a node restarted after a failover starts cold while the
 * uninterrupted run it must continue ran warm. Two operations broke this before: {@code lanewise(EXP)} (now
 * {@code tensor.Exp}) and {@code reduceLanes(ADD)}, whose fallback adds the lanes in order and whose intrinsic adds
 * them as a tree (now {@code tensor.Lanes.sum}). On the Java kernels (every product in Java) and on the native ones.
 */
class JitDeterminismProcessTest
{
    @TempDir
    static Path dir;

    @ParameterizedTest
    @ValueSource(strings = {"java", "native"})
    void shouldGiveTheSameLogitsBitsInterpretedAndCompiled(final String kernels) throws Exception
    {
        final Path model = dir.resolve("m.gguf");
        if (!Files.exists(model))
        {
            SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=256,layers=2,heads=4,kv=2,ffn=512"),
                GgmlType.Q8_0, null, 7);
        }
        final String c1 = run(kernels, model, 1, "-XX:TieredStopAtLevel=1");
        // C2 only, compiling early: the later rounds run C2 code for the attention dots, norms and products
        final String c2 = run(kernels, model, 20, "-XX:-TieredCompilation", "-XX:CompileThreshold=300");
        assertEquals(c1, c2, kernels + " kernels: logits of C1-only and C2-compiled runs");
    }

    private static String run(final String kernels, final Path model, final int rounds, final String... jit)
        throws Exception
    {
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow());
        command.addAll(ParamServerProcessTest.stackJvmFlags().stream()
            .filter(a -> !a.startsWith("-Dstrata.kernels")).toList());
        command.addAll(List.of(jit));
        command.addAll(List.of("-Dstrata.kernels=" + kernels, "-cp", System.getProperty("java.class.path"),
            ForwardBits.class.getName(), model.toString(), Integer.toString(rounds)));
        final Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        final String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child finished");
        assertEquals(0, p.exitValue(), out);
        return out.lines().filter(l -> l.startsWith("logits-crc ")).findFirst()
            .orElseThrow(() -> new AssertionError("no result: " + out));
    }
}
