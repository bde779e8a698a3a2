package dev.strata.tools;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where a command finds a token, so that it need not be on the command line (where {@code ps} shows it): an option
 * naming a file, an option with the value, an environment variable naming a file, or one with the value.
 */
final class Tokens
{
    private Tokens()
    {
    }

    /**
     * The first of: {@code value}, the content of {@code file}, the environment variable {@code env}, the content of
     * the file named by {@code env + "_FILE"}; null when none is set.
     *
     * @throws IllegalArgumentException naming the file when it cannot be read or is empty.
     */
    static String resolve(final String value, final Path file, final String env)
    {
        if (value != null && file != null)
        {
            throw new IllegalArgumentException("give the token once: a value or a file, not both");
        }
        if (value != null)
        {
            return value;
        }
        if (file != null)
        {
            return read(file);
        }
        final String fromEnv = System.getenv(env);
        if (fromEnv != null && !fromEnv.isEmpty())
        {
            return fromEnv;
        }
        final String fileEnv = System.getenv(env + "_FILE");
        return fileEnv == null || fileEnv.isEmpty() ? null : read(Path.of(fileEnv));
    }

    static String read(final Path file)
    {
        try
        {
            final String t = Files.readString(file).strip();
            if (t.isEmpty())
            {
                throw new IllegalArgumentException("the token file " + file + " is empty");
            }
            return t;
        }
        catch (final IOException ex)
        {
            throw new IllegalArgumentException("cannot read the token file " + file + ": " + ex.getMessage(), ex);
        }
    }
}
