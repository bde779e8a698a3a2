package dev.strata.compute.stream;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufFormatException;
import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.model.ModelConfig;
import dev.strata.paramclient.Manifest;
import dev.strata.paramclient.ParamClient;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * One model version pinned by a compute node: the label (or number) is resolved once, to a version number, and
 * everything after (manifest, metadata, every block) comes from that version only. The node holds a lease on it
 * (renewed in the background, released on close), so the service will not delete it meanwhile.
 */
public final class RemoteModel implements AutoCloseable
{
    private final ParamClient admin;
    private final String model;
    private final int version;
    private final Manifest manifest;
    private final GgufMetadata metadata;
    private final ModelConfig config;
    private final Map<String, Manifest.Tensor> tensors = new LinkedHashMap<>();
    private final String node;
    private final ScheduledExecutorService leases;

    private RemoteModel(final ParamClient admin, final String model, final ParamClient.PinnedManifest pinned,
        final String node, final long leaseMillis) throws IOException
    {
        this.admin = admin;
        this.model = model;
        this.version = pinned.version();
        this.manifest = pinned.manifest();
        this.node = node;
        for (final Manifest.Tensor t : manifest.tensors())
        {
            tensors.put(t.name(), t);
        }
        final byte[] meta = admin.getBlock(manifest.metadata());
        try
        {
            this.metadata = GgufFile.parse(MemorySegment.ofArray(meta)).metadata();
        }
        catch (final GgufFormatException ex)
        {
            throw new IOException("metadata of " + pinned() + " is not a GGUF header: " + ex.getMessage(), ex);
        }
        final Manifest.Tensor embd = tensors.get("token_embd.weight");
        if (embd == null || embd.shape().length != 2)
        {
            throw new IOException(pinned() + " has no 2-D token_embd.weight");
        }
        this.config = ModelConfig.fromMetadata(metadata, Math.toIntExact(embd.shape()[1]));
        admin.lease(node, model, version, leaseMillis);
        leases = Executors.newSingleThreadScheduledExecutor(r ->
        {
            final Thread t = new Thread(r, "strata-lease-" + node);
            t.setDaemon(true);
            return t;
        });
        leases.scheduleAtFixedRate(() ->
        {
            try
            {
                admin.lease(node, model, version, leaseMillis);
            }
            catch (final IOException ex)
            {
                // the service may be restarting: the lease has a margin of two more periods
            }
        }, leaseMillis / 3, leaseMillis / 3, TimeUnit.MILLISECONDS);
    }

    /**
     * Resolves {@code versionOrLabel} ({@code stable}, {@code canary} or a number) once and pins that version.
     *
     * @param node        this node's name (for its lease).
     * @param leaseMillis lease length; renewed every third of it.
     */
    public static RemoteModel open(final ParamClient admin, final String model, final String versionOrLabel,
        final String node, final long leaseMillis) throws IOException
    {
        return new RemoteModel(admin, model, admin.manifest(model, versionOrLabel), node, leaseMillis);
    }

    /** {@code model@number}: what block requests name. */
    public String pinned()
    {
        return model + "@" + version;
    }

    public String model()
    {
        return model;
    }

    public int version()
    {
        return version;
    }

    public Manifest manifest()
    {
        return manifest;
    }

    public GgufMetadata metadata()
    {
        return metadata;
    }

    public ModelConfig config()
    {
        return config;
    }

    public ParamClient admin()
    {
        return admin;
    }

    /** A tensor of this version by GGUF name, or null. */
    public Manifest.Tensor tensor(final String name)
    {
        return tensors.get(name);
    }

    public long totalBytes()
    {
        long n = 0;
        for (final Manifest.Tensor t : manifest.tensors())
        {
            n += t.byteSize();
        }
        return n;
    }

    @Override
    public void close()
    {
        leases.shutdownNow();
        try
        {
            admin.release(node, model, version);
        }
        catch (final IOException ex)
        {
            // the lease expires by itself
        }
    }
}
