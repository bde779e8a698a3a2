package dev.strata.compute.model;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Locates {@code ../shared/models} for tests; tests that need it skip with a clear message when absent. */
final class SharedModels
{
    private SharedModels()
    {
    }

    static Path dir()
    {
        final String configured = System.getProperty("strata.shared.models");
        // surefire sets the property to <project>/../shared/models; from a module directory that is ../../shared
        return configured != null ? Path.of(configured) : Path.of("").toAbsolutePath().resolve("../../shared/models").normalize();
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
        final com.fasterxml.jackson.databind.JsonNode array =
            new com.fasterxml.jackson.databind.ObjectMapper().readTree(json.toFile()).get(field);
        if (array == null || !array.isArray())
        {
            throw new IllegalStateException("no array field " + field + " in " + json);
        }
        final int[] values = new int[array.size()];
        for (int i = 0; i < values.length; i++)
        {
            values[i] = array.get(i).intValue();
        }
        return values;
    }
}
