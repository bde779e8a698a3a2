package dev.strata.paramserver;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Persists a {@link ModelRegistry} as an append-only command log: a command is applied, then appended and
 * forced to disk before {@link #execute} returns; on open the log is replayed. A torn last line (a crash
 * mid-append) is ignored. One line per command: {@code Type|field|field...} (names cannot hold {@code |}).
 */
public final class RegistryLog implements AutoCloseable
{
    private final ModelRegistry registry = new ModelRegistry();
    private final FileChannel channel;

    public RegistryLog(final Path file) throws IOException
    {
        final byte[] bytes = Files.exists(file) ? Files.readAllBytes(file) : new byte[0];
        int end = bytes.length;
        while (end > 0 && bytes[end - 1] != '\n')
        {
            end--; // a torn last line (crash mid-append) is dropped
        }
        final String complete = new String(bytes, 0, end, StandardCharsets.UTF_8);
        for (final String line : complete.split("\n"))
        {
            if (!line.isEmpty())
            {
                registry.apply(decode(line));
            }
        }
        channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        channel.position(end);
    }

    public ModelRegistry registry()
    {
        return registry;
    }

    /** Applies and durably records a command; a rejected command is not recorded. */
    public synchronized ModelRegistry.Version execute(final RegistryCommand command) throws IOException
    {
        final ModelRegistry.Version result = registry.apply(command);
        final ByteBuffer line = ByteBuffer.wrap((encode(command) + "\n").getBytes(StandardCharsets.UTF_8));
        channel.truncate(channel.position());
        while (line.hasRemaining())
        {
            channel.write(line);
        }
        channel.force(false);
        return result;
    }

    static String encode(final RegistryCommand c)
    {
        return switch (c)
        {
            case RegistryCommand.CreateVersion x -> "CreateVersion|" + x.model() + "|" + x.manifestDigest();
            case RegistryCommand.Commit x -> "Commit|" + x.model() + "|" + x.version() + "|" + x.manifestDigest();
            case RegistryCommand.Promote x -> "Promote|" + x.model() + "|" + x.version();
            case RegistryCommand.Canary x -> "Canary|" + x.model() + "|" + x.version() + "|" + x.weightPercent();
            case RegistryCommand.Rollback x -> "Rollback|" + x.model();
            case RegistryCommand.Delete x -> "Delete|" + x.model() + "|" + x.version() + "|" + x.atMillis();
            case RegistryCommand.AcquireLease x ->
                "AcquireLease|" + x.node() + "|" + x.model() + "|" + x.version() + "|" + x.expiresAtMillis();
            case RegistryCommand.ReleaseLease x -> "ReleaseLease|" + x.node() + "|" + x.model() + "|" + x.version();
        };
    }

    static RegistryCommand decode(final String line)
    {
        final String[] f = line.split("\\|", -1);
        return switch (f[0])
        {
            case "CreateVersion" -> new RegistryCommand.CreateVersion(f[1], f[2]);
            case "Commit" -> new RegistryCommand.Commit(f[1], Integer.parseInt(f[2]), f[3]);
            case "Promote" -> new RegistryCommand.Promote(f[1], Integer.parseInt(f[2]));
            case "Canary" -> new RegistryCommand.Canary(f[1], Integer.parseInt(f[2]), Integer.parseInt(f[3]));
            case "Rollback" -> new RegistryCommand.Rollback(f[1]);
            case "Delete" -> new RegistryCommand.Delete(f[1], Integer.parseInt(f[2]),
                Long.parseLong(f[3]));
            case "AcquireLease" -> new RegistryCommand.AcquireLease(f[1], f[2], Integer.parseInt(f[3]),
                Long.parseLong(f[4]));
            case "ReleaseLease" -> new RegistryCommand.ReleaseLease(f[1], f[2], Integer.parseInt(f[3]));
            default -> throw new IllegalStateException("corrupt registry log line: " + line);
        };
    }

    @Override
    public void close() throws IOException
    {
        channel.close();
    }
}
