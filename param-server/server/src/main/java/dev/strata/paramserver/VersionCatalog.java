package dev.strata.paramserver;

import dev.strata.transport.BlockId;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * The blocks of every visible version ({@code model@number}) as an immutable snapshot: the block server checks each
 * request against it without a lock, while the service republishes it under its own lock after every registry
 * change (before any garbage of that change is collected). Labels are not keys: requests name a pinned number.
 */
final class VersionCatalog implements BlockServer.Catalog
{
    private volatile Map<String, Set<BlockId>> snapshot = Map.of();

    @Override
    public Set<BlockId> blocksOf(final String modelVersion)
    {
        return snapshot.get(modelVersion);
    }

    /**
     * Rebuilds the snapshot from the registry: sets of versions already in it are reused, so only a newly visible
     * version reads its manifest. Called by one thread at a time (the service's lock).
     */
    void publish(final ModelRegistry registry, final ManifestStore manifests) throws IOException
    {
        final Map<String, Set<BlockId>> previous = snapshot;
        final Map<String, Set<BlockId>> next = new HashMap<>();
        for (final String model : registry.models())
        {
            for (final ModelRegistry.Version v : registry.versionsOf(model))
            {
                if (v.state() == VersionState.UPLOADING || v.state() == VersionState.DELETED)
                {
                    continue;
                }
                final String key = model + "@" + v.number();
                final Set<BlockId> known = previous.get(key);
                if (known != null)
                {
                    next.put(key, known);
                    continue;
                }
                try
                {
                    next.put(key, Set.copyOf(manifests.manifest(v).allBlocks()));
                }
                catch (final IOException ex)
                {
                    // a version whose manifest cannot be read is not served; the rest of the service is
                    System.getLogger(VersionCatalog.class.getName()).log(System.Logger.Level.WARNING,
                        key + " is not served: " + ex.getMessage() + " (remove it with strata model rm " + key + ")");
                }
            }
        }
        snapshot = Map.copyOf(next);
    }
}
