package dev.strata.compute.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The native build script on a machine without a C compiler: it must skip with a message and succeed, so that the
 * Maven build goes on with the Java kernels (the rest of the suite runs on them: surefire sets
 * {@code strata.kernels=java}, and the native kernels' tests skip where the jar has no library).
 */
@Timeout(60)
class NativeBuildScriptTest
{
    private static final Path SCRIPT = Path.of("src/main/c/build.sh");

    @TempDir
    Path dir;

    @Test
    void shouldSkipWithAMessageWhenNoCompilerIsOnThePath() throws Exception
    {
        assumeTrue(Files.isRegularFile(SCRIPT) && Files.isExecutable(Path.of("/bin/sh")), "needs the script and sh");
        // a PATH with the tools the script uses and no gcc, clang or cc
        final Path bin = Files.createDirectory(dir.resolve("bin"));
        for (final String tool : List.of("uname", "dirname"))
        {
            final Path found = which(tool);
            assumeTrue(found != null, "no " + tool);
            Files.createSymbolicLink(bin.resolve(tool), found);
        }
        final Result r = run(Map.of("PATH", bin.toString()));
        assertEquals(0, r.exit, r.output);
        assertTrue(r.output.contains("skipped"), r.output);
        assertFalse(Files.exists(dir.resolve("out/libstratakernels.so")));
    }

    @Test
    void shouldSkipWhenTheCompilerIsSetToNone() throws Exception
    {
        assumeTrue(Files.isRegularFile(SCRIPT) && Files.isExecutable(Path.of("/bin/sh")), "needs the script and sh");
        final Result r = run(Map.of("STRATA_CC", "none"));
        assertEquals(0, r.exit, r.output);
        assertTrue(r.output.contains("skipped"), r.output);
        assertFalse(Files.exists(dir.resolve("out/libstratakernels.so")));
    }

    private record Result(int exit, String output)
    {
    }

    private Result run(final Map<String, String> env) throws IOException, InterruptedException
    {
        final ProcessBuilder pb = new ProcessBuilder("/bin/sh", SCRIPT.toAbsolutePath().toString(),
            dir.resolve("out").toString()).redirectErrorStream(true);
        pb.environment().putAll(env);
        final Process p = pb.start();
        final String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        return new Result(p.waitFor(), output);
    }

    private static Path which(final String tool)
    {
        for (final String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":"))
        {
            final Path p = Path.of(d, tool);
            if (Files.isExecutable(p))
            {
                return p;
            }
        }
        return null;
    }
}
