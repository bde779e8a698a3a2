package dev.strata.compute.model;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Locates {@code ../shared/models} for tests; tests that need it skip with a clear message when absent. */
final class SharedModels
{
    private SharedModels()
    {
    }

    static Path dir()
    {
        final String configured = System.getProperty("strata.shared.models");
        final Path dir = configured != null ? Path.of(configured) : Path.of("/work/shared/models");
        return Files.isDirectory(dir) ? dir : Path.of("/work/shared/models");
    }

    static Path require(final String name)
    {
        final Path p = dir().resolve(name);
        Assumptions.assumeTrue(Files.isRegularFile(p),
            "skipped: shared model data " + p + " is absent (tests that need ../shared/models skip without it)");
        return p;
    }

    /** Reads an integer array field from a small JSON document. */
    static int[] intArray(final Path json, final String field) throws IOException
    {
        final String text = Files.readString(json);
        final Matcher m = Pattern.compile("\"" + Pattern.quote(field) + "\"\\s*:\\s*\\[([^\\]]*)\\]").matcher(text);
        if (!m.find())
        {
            throw new IllegalStateException("no field " + field + " in " + json);
        }
        return Arrays.stream(m.group(1).split(",")).map(String::trim).filter(s -> !s.isEmpty())
            .mapToInt(Integer::parseInt).toArray();
    }
}
