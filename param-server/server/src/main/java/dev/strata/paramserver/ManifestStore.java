package dev.strata.paramserver;

import dev.strata.paramclient.Manifest;
import dev.strata.transport.BlockId;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Manifests as immutable files named by their SHA-256 ({@code DIR/manifests/<digest>}): written to a temporary
 * file, forced, renamed and the directory forced, so a manifest is either whole or absent after a crash; read back
 * checked against the digest; decoded once and cached by digest.
 */
final class ManifestStore
{
    private final Path dir;
    private final Map<String, Manifest> cache = new ConcurrentHashMap<>();

    ManifestStore(final Path dir) throws IOException
    {
        this.dir = Files.createDirectories(dir);
    }

    /** Writes {@code encoded} durably under its digest, unless it is there already. */
    void write(final String digest, final byte[] encoded) throws IOException
    {
        final Path file = dir.resolve(digest);
        if (Files.exists(file))
        {
            return;
        }
        final Path tmp = dir.resolve(digest + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING))
        {
            final ByteBuffer b = ByteBuffer.wrap(encoded);
            while (b.hasRemaining())
            {
                ch.write(b);
            }
            ch.force(true);
        }
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ))
        {
            d.force(true);
        }
    }

    /** The bytes of the manifest of {@code v}, checked against its digest. */
    byte[] read(final ModelRegistry.Version v) throws IOException
    {
        final byte[] bytes = Files.readAllBytes(dir.resolve(v.manifestDigest()));
        if (!BlockId.of(bytes).hex().equals(v.manifestDigest()))
        {
            throw new IOException("manifest of " + v.model() + "@" + v.number() + " is corrupt on disk");
        }
        return bytes;
    }

    /** The decoded manifest of {@code v} (cached). */
    Manifest manifest(final ModelRegistry.Version v) throws IOException
    {
        final Manifest cached = cache.get(v.manifestDigest());
        if (cached != null)
        {
            return cached;
        }
        final Manifest m = Manifest.decode(read(v));
        cache.put(v.manifestDigest(), m);
        return m;
    }
}
