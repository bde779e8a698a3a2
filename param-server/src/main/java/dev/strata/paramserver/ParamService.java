package dev.strata.paramserver;

import dev.strata.tiering.BlockId;
import dev.strata.tiering.BlockIndex;
import dev.strata.tiering.DirectoryObjectTier;
import dev.strata.tiering.EvictionPolicy;
import dev.strata.tiering.MemoryTier;
import dev.strata.tiering.RocksDbTier;
import dev.strata.tiering.Tier;
import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import io.aeron.Subscription;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import org.agrona.CloseHelper;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The parameter service in one process: a {@link TieredBlockStore} (memory, RocksDB, object directory) under a
 * data directory, the {@link ModelRegistry} persisted by its {@link RegistryLog}, manifests as immutable files
 * named by their SHA-256, a {@link BlockServer} on Aeron (IPC and UDP) and the HTTP admin API.
 * <p>
 * Commit is atomic: a version becomes visible only when its manifest is durable and every block it names is
 * durable in the object tier (blocks are verified against their id when uploaded), and the registry's commit
 * record is forced to disk last. A crash before that leaves an invisible uploading version that a re-run of the
 * same upload resumes. Blocks are never deleted with a version (other versions may share them).
 */
public final class ParamService implements AutoCloseable
{
    /** Aeron stream the block server listens on (IPC and UDP). */
    public static final int REQUEST_STREAM = 1001;
    public static final long MAX_BLOCK_BYTES = 64L << 20;

    /** An S3-compatible object store for the object tier, instead of the directory under the data directory. */
    public record S3(java.net.URI endpoint, String region, String bucket, String prefix, String accessKey,
        String secretKey)
    {
        @Override
        public String toString()
        {
            return endpoint + "/" + bucket + "/" + (prefix == null ? "" : prefix); // never the secret
        }
    }

    /**
     * Settings; {@code token} null means an open service (tests and local development only); {@code s3} null
     * keeps the object tier in {@code dataDir/objects}.
     */
    public record Config(Path dataDir, int adminPort, String token, boolean protectReads, long memoryBudgetBytes,
        long ssdBudgetBytes, String udpEndpoint, S3 s3)
    {
        public Config
        {
            if (memoryBudgetBytes < MAX_BLOCK_BYTES || ssdBudgetBytes < MAX_BLOCK_BYTES)
            {
                throw new IllegalArgumentException("memory and SSD budgets must be at least " + MAX_BLOCK_BYTES +
                    " bytes");
            }
            if (adminPort < 0 || adminPort > 65_535)
            {
                throw new IllegalArgumentException("invalid admin port " + adminPort);
            }
        }

        public static Config defaults(final Path dataDir)
        {
            return new Config(dataDir, 0, null, false, 1L << 30, 16L << 30, "localhost:0", null);
        }

        public Config withToken(final String t)
        {
            return new Config(dataDir, adminPort, t, protectReads, memoryBudgetBytes, ssdBudgetBytes, udpEndpoint, s3);
        }

        public Config withMemoryBudget(final long bytes)
        {
            return new Config(dataDir, adminPort, token, protectReads, bytes, ssdBudgetBytes, udpEndpoint, s3);
        }

        public Config withAdminPort(final int port)
        {
            return new Config(dataDir, port, token, protectReads, memoryBudgetBytes, ssdBudgetBytes, udpEndpoint, s3);
        }

        public Config withProtectReads(final boolean protect)
        {
            return new Config(dataDir, adminPort, token, protect, memoryBudgetBytes, ssdBudgetBytes, udpEndpoint, s3);
        }

        public Config withS3(final S3 store)
        {
            return new Config(dataDir, adminPort, token, protectReads, memoryBudgetBytes, ssdBudgetBytes, udpEndpoint,
                store);
        }
    }

    /** What the block server listens on, for clients to find. */
    public record Endpoints(String aeronDirectory, String ipcChannel, String udpChannel, int streamId)
    {
    }

    private final Config config;
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final PrometheusMeterRegistry metrics = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final MemoryTier memory;
    private final RocksDbTier ssd;
    private final Tier object;
    private final BlockIndex index;
    private final TieredBlockStore store;
    private final RegistryLog registryLog;
    private final Path manifests;
    private final Map<String, Manifest> manifestCache = new ConcurrentHashMap<>();
    private final Map<String, Set<BlockId>> catalog = new ConcurrentHashMap<>();
    /** Blocks of deleted versions not yet collected (an upload was in progress). Guarded by this. */
    private final Set<BlockId> pendingGarbage = new HashSet<>();
    private long blocksCollected;
    private final Transport transport;
    private final BlockServer blockServer;
    private final AgentRunner blockServerRunner;
    private final Endpoints endpoints;
    private final AdminServer admin;

    private ParamService(final Config config) throws Exception
    {
        this.config = config;
        Files.createDirectories(config.dataDir());
        lockChannel = FileChannel.open(config.dataDir().resolve("lock"), StandardOpenOption.CREATE,
            StandardOpenOption.WRITE);
        FileLock l;
        try
        {
            l = lockChannel.tryLock();
        }
        catch (final OverlappingFileLockException ex)
        {
            l = null;
        }
        if (l == null)
        {
            lockChannel.close();
            throw new IOException("data directory " + config.dataDir() + " is in use by another parameter service");
        }
        lock = l;
        memory = new MemoryTier(config.memoryBudgetBytes(), EvictionPolicy.costAware());
        ssd = new RocksDbTier(config.dataDir().resolve("ssd"), config.ssdBudgetBytes());
        final S3 s3 = config.s3();
        object = s3 == null ? new DirectoryObjectTier(config.dataDir().resolve("objects")) :
            new dev.strata.tiering.S3ObjectTier(s3.endpoint(), s3.region(), s3.bucket(), s3.accessKey(),
                s3.secretKey(), s3.prefix());
        store = new TieredBlockStore(memory, ssd, object, MAX_BLOCK_BYTES, 2, metrics);
        index = BlockIndex.open(config.dataDir().resolve("block-index.dat"), 4_000_000);
        store.attachIndex(index);
        manifests = Files.createDirectories(config.dataDir().resolve("manifests"));
        registryLog = new RegistryLog(config.dataDir().resolve("registry.log"));

        transport = Transport.launch(new TransportContext());
        final Subscription ipc = transport.subscription(TransportContext.IPC_CHANNEL, REQUEST_STREAM);
        final Subscription udp = transport.subscription("aeron:udp?endpoint=" + config.udpEndpoint(), REQUEST_STREAM);
        String udpChannel = null;
        for (int i = 0; i < 1000 && (udpChannel = udp.tryResolveChannelEndpointPort()) == null; i++)
        {
            Thread.sleep(1);
        }
        if (udpChannel == null)
        {
            throw new IOException("could not bind the UDP endpoint " + config.udpEndpoint());
        }
        endpoints = new Endpoints(transport.context().aeronDirectory(), TransportContext.IPC_CHANNEL, udpChannel,
            REQUEST_STREAM);
        blockServer = new BlockServer(store, List.of(ipc, udp), transport.aeron(), this::blocksOf)
            .requireToken(config.protectReads() ? config.token() : null);
        blockServerRunner = new AgentRunner(new BackoffIdleStrategy(), Throwable::printStackTrace, null, blockServer);
        AgentRunner.startOnThread(blockServerRunner);

        Gauge.builder("strata.blocks.served", blockServer, BlockServer::served).register(metrics);
        Gauge.builder("strata.blocks.collected", this, ParamService::blocksCollected).register(metrics);
        Gauge.builder("strata.blocks.served.bytes", blockServer, BlockServer::servedBytes).register(metrics);
        Gauge.builder("strata.requests.rejected", blockServer, BlockServer::rejected).register(metrics);
        Gauge.builder("strata.requests.dropped", blockServer, BlockServer::dropped).register(metrics);
        Gauge.builder("strata.prefetch.hints", blockServer, BlockServer::hinted).register(metrics);
        Gauge.builder("strata.models", this, s -> s.models().size()).register(metrics);

        admin = new AdminServer(this, config.adminPort(), config.token(), config.protectReads());
    }

    /** Opens the data directory (replaying the registry) and starts the block server and admin API. */
    public static ParamService start(final Config config) throws Exception
    {
        return new ParamService(config);
    }

    public Config config()
    {
        return config;
    }

    public int adminPort()
    {
        return admin.port();
    }

    public Endpoints endpoints()
    {
        return endpoints;
    }

    public PrometheusMeterRegistry metrics()
    {
        return metrics;
    }

    public TieredBlockStore store()
    {
        return store;
    }

    public BlockServer blockServer()
    {
        return blockServer;
    }

    // ---- blocks

    /** The ids among {@code ids} whose blocks are not durable in the object tier. */
    public List<BlockId> missing(final List<BlockId> ids) throws IOException
    {
        final List<BlockId> missing = new ArrayList<>();
        for (final BlockId id : new LinkedHashSet<>(ids))
        {
            if (!object.contains(id))
            {
                missing.add(id);
            }
        }
        return missing;
    }

    /**
     * Stores an uploaded block, checked against its id (hashed once, by the store, before anything is written);
     * durable in the object tier on return. A block already stored is not written (or hashed) again.
     */
    public boolean putBlock(final BlockId claimed, final byte[] bytes) throws IOException
    {
        if (object.contains(claimed))
        {
            return false;
        }
        store.put(claimed, MemorySegment.ofArray(bytes));
        return true;
    }

    // ---- versions

    /** Starts (or resumes, for the same manifest) an upload; returns the version and whether it resumed. */
    public synchronized Map.Entry<ModelRegistry.Version, Boolean> beginUpload(final String model,
        final String manifestDigest) throws IOException
    {
        final ModelRegistry.Version existing = registryLog.registry().uploading(ModelRegistry.checkName(model),
            manifestDigest);
        if (existing != null)
        {
            return Map.entry(existing, true);
        }
        return Map.entry(registryLog.execute(new RegistryCommand.CreateVersion(model, manifestDigest)), false);
    }

    /**
     * Commits an uploaded version: the manifest must hash to the digest the upload began with, name this model,
     * and every block it names must be durable in the object tier.
     */
    public synchronized ModelRegistry.Version commit(final String model, final int version, final byte[] encoded)
        throws IOException
    {
        final String digest = BlockId.of(encoded).hex();
        final Manifest manifest;
        try
        {
            manifest = Manifest.decode(encoded);
        }
        catch (final IOException ex)
        {
            throw new IllegalArgumentException("malformed manifest: " + ex.getMessage(), ex);
        }
        if (!manifest.model().equals(model))
        {
            throw new IllegalArgumentException("the manifest is for model '" + manifest.model() + "', not '" + model +
                "'");
        }
        final List<BlockId> missing = missing(manifest.allBlocks());
        if (!missing.isEmpty())
        {
            throw new RegistryException("cannot commit " + model + "@" + version + ": " + missing.size() +
                " blocks are not uploaded yet (first: " + missing.getFirst() + ")");
        }
        final Path file = manifests.resolve(digest);
        if (!Files.exists(file))
        {
            final Path tmp = manifests.resolve(digest + ".tmp");
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING))
            {
                final java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(encoded);
                while (b.hasRemaining())
                {
                    ch.write(b);
                }
                ch.force(true);
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
            try (FileChannel dir = FileChannel.open(manifests, StandardOpenOption.READ))
            {
                dir.force(true);
            }
        }
        final ModelRegistry.Version committed = registryLog.execute(new RegistryCommand.Commit(model, version, digest));
        collectGarbage(); // what a delete during this upload left
        return committed;
    }

    public synchronized ModelRegistry.Version execute(final RegistryCommand command) throws IOException
    {
        final Manifest deleted = command instanceof RegistryCommand.Delete d ? committedManifest(d.model(), d.version())
            : null;
        final ModelRegistry.Version v = registryLog.execute(command);
        if (command instanceof RegistryCommand.Delete d)
        {
            catalog.remove(d.model() + "@" + d.version());
            if (deleted != null)
            {
                pendingGarbage.addAll(deleted.allBlocks());
                collectGarbage();
            }
        }
        return v;
    }

    /** The manifest of a committed (not uploading, not deleted) version, or null. */
    private Manifest committedManifest(final String model, final int number) throws IOException
    {
        for (final ModelRegistry.Version v : registryLog.registry().versionsOf(model))
        {
            if (v.number() == number && v.state() != VersionState.UPLOADING && v.state() != VersionState.DELETED)
            {
                return manifest(v);
            }
        }
        return null;
    }

    /**
     * Deletes, from every tier, the blocks of deleted versions that no remaining version refers to. While an upload is
     * in progress nothing is collected: it may count on a block it found stored and did not send. Holds the lock.
     *
     * @return blocks deleted.
     */
    private int collectGarbage() throws IOException
    {
        if (pendingGarbage.isEmpty())
        {
            return 0;
        }
        final Set<BlockId> live;
        try
        {
            live = liveBlocks();
        }
        catch (final RegistryException uploading)
        {
            return 0; // collected after that upload commits
        }
        return (int)deleteUnused(pendingGarbage, live);
    }

    /**
     * An operator's sweep: deletes every stored block (object, SSD and memory tiers) that no committed version refers
     * to, such as blocks a delete left pending before a restart or blocks of a deleted upload. The tiers must belong
     * to this service alone (an S3 prefix shared with another service would lose that service's blocks).
     *
     * @return {@code {stored, deleted}}: distinct blocks found in the tiers, and how many were deleted.
     * @throws RegistryException while an upload is in progress: it may count on stored blocks no version names yet.
     */
    public synchronized long[] sweep() throws IOException
    {
        final Set<BlockId> live = liveBlocks();
        final Set<BlockId> stored = new HashSet<>(object.ids());
        stored.addAll(ssd.ids());
        stored.addAll(memory.ids());
        return new long[]{stored.size(), deleteUnused(stored, live)};
    }

    /**
     * Deletes the {@code candidates} not in {@code live} from every tier; what was pending is settled either way.
     * Holds the lock.
     *
     * @return blocks deleted.
     */
    private long deleteUnused(final Set<BlockId> candidates, final Set<BlockId> live) throws IOException
    {
        long deleted = 0;
        for (final BlockId id : candidates)
        {
            if (!live.contains(id) && store.delete(id))
            {
                deleted++;
            }
        }
        pendingGarbage.clear();
        blocksCollected += deleted;
        return deleted;
    }

    /**
     * The blocks of every committed version. A manifest that cannot be read fails the whole call, so that nothing is
     * collected on an incomplete picture. Holds the lock.
     *
     * @throws RegistryException while an upload is in progress: it may count on stored blocks no version names yet.
     */
    private Set<BlockId> liveBlocks() throws IOException
    {
        final Set<BlockId> live = new HashSet<>();
        for (final String model : registryLog.registry().models())
        {
            for (final ModelRegistry.Version v : registryLog.registry().versionsOf(model))
            {
                if (v.state() == VersionState.UPLOADING)
                {
                    throw new RegistryException("an upload is in progress (" + model + "@" + v.number() + "): " +
                        "collect after it commits, or delete it");
                }
                if (v.state() != VersionState.DELETED)
                {
                    live.addAll(manifest(v).allBlocks());
                }
            }
        }
        return live;
    }

    /** Blocks deleted by garbage collection since start. */
    public synchronized long blocksCollected()
    {
        return blocksCollected;
    }

    public synchronized ModelRegistry.Version resolve(final String model, final String versionOrLabel)
    {
        return registryLog.registry().resolve(model, versionOrLabel);
    }

    public synchronized List<ModelRegistry.Version> versions(final String model)
    {
        return registryLog.registry().versionsOf(model);
    }

    public synchronized List<String> models()
    {
        return registryLog.registry().models();
    }

    public synchronized Map<String, Long> leases(final String model, final int version)
    {
        return registryLog.registry().leasesOf(model, version, System.currentTimeMillis());
    }

    /** The manifest of a visible version. */
    public Manifest manifest(final ModelRegistry.Version v) throws IOException
    {
        return decodeManifest(manifestBytes(v));
    }

    public byte[] manifestBytes(final ModelRegistry.Version v) throws IOException
    {
        final byte[] bytes = Files.readAllBytes(manifests.resolve(v.manifestDigest()));
        if (!BlockId.of(bytes).hex().equals(v.manifestDigest()))
        {
            throw new IOException("manifest of " + v.model() + "@" + v.number() + " is corrupt on disk");
        }
        return bytes;
    }

    private Manifest decodeManifest(final byte[] bytes) throws IOException
    {
        final String digest = BlockId.of(bytes).hex();
        final Manifest cached = manifestCache.get(digest);
        if (cached != null)
        {
            return cached;
        }
        final Manifest m = Manifest.decode(bytes);
        manifestCache.put(digest, m);
        return m;
    }

    /** For the block server: the blocks of {@code model@number}, or null when it is not a visible version. */
    Set<BlockId> blocksOf(final String modelVersion)
    {
        final Set<BlockId> cached = catalog.get(modelVersion);
        if (cached != null)
        {
            return cached;
        }
        final int at = modelVersion.lastIndexOf('@');
        if (at <= 0)
        {
            return null;
        }
        try
        {
            final ModelRegistry.Version v = resolve(modelVersion.substring(0, at), modelVersion.substring(at + 1));
            if (!String.valueOf(v.number()).equals(modelVersion.substring(at + 1)))
            {
                return null; // requests name a pinned number, never a label
            }
            final Set<BlockId> ids = Set.copyOf(new HashSet<>(manifest(v).allBlocks()));
            catalog.put(modelVersion, ids);
            return ids;
        }
        catch (final RuntimeException | IOException ex)
        {
            return null;
        }
    }

    /** Verification of one version: every block re-read and re-hashed in each tier, bad copies rewritten. */
    public record VerifyReport(int blocks, int good, List<BlockId> lost, long repairsBefore, long repairsAfter)
    {
    }

    public VerifyReport verify(final ModelRegistry.Version v) throws IOException
    {
        final long before = store.stats().repairs();
        final Set<BlockId> unique = new LinkedHashSet<>(manifest(v).allBlocks());
        final List<BlockId> lost = new ArrayList<>();
        for (final BlockId id : unique)
        {
            if (!store.scrub(id))
            {
                lost.add(id);
            }
        }
        return new VerifyReport(unique.size(), unique.size() - lost.size(), lost, before, store.stats().repairs());
    }

    /** Reads a block for the admin API (export). */
    public byte[] readBlock(final BlockId id) throws IOException
    {
        try (TieredBlockStore.Pinned p = store.acquire(id))
        {
            return p.bytes().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        }
    }

    @Override
    public void close()
    {
        CloseHelper.quietClose(admin);
        CloseHelper.quietClose(blockServerRunner);
        CloseHelper.quietClose(transport);
        CloseHelper.quietCloseAll(registryLog, store, index);
        CloseHelper.quietCloseAll(memory, ssd, object);
        try
        {
            lock.release();
            lockChannel.close();
        }
        catch (final IOException ignored)
        {
            // closing anyway
        }
        metrics.close();
    }
}
