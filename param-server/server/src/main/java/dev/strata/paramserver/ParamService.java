package dev.strata.paramserver;

import dev.strata.paramclient.ServiceInfo;
import dev.strata.paramclient.Manifest;

import dev.strata.transport.BlockId;
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
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

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
     * Every setting of a service, with defaults, checked once by {@link #conclude()}. A process that runs several
     * roles shares one Aeron client and one meter registry among them: pass them here and the service uses them
     * without owning them (it opens, and then closes, its own only when none is given).
     */
    public static final class Context
    {
        private Path dataDir;
        private int adminPort;
        private String token;
        private String readToken;
        private boolean openReads;
        private String bindAddress = "127.0.0.1";
        private int uploadSlots = 16;
        private long maxBodyMillis = 30_000;
        private long uploadExpiryMillis = java.util.concurrent.TimeUnit.HOURS.toMillis(24);
        private long memoryBudgetBytes = 1L << 30;
        private long ssdBudgetBytes = 16L << 30;
        private String udpEndpoint = "localhost:0";
        private S3 s3;
        private long linkBytesPerSecond;
        private Transport transport;
        private PrometheusMeterRegistry meterRegistry;
        private boolean concluded;

        /** The data directory (required): lock, SSD tier, objects, index, manifests, registry log. */
        public Context dataDir(final Path dir)
        {
            this.dataDir = dir;
            return this;
        }

        /** The admin API's port; 0 (the default) picks a free one. */
        public Context adminPort(final int port)
        {
            this.adminPort = port;
            return this;
        }

        /**
         * The admin token: every call accepts it, mutations need it. With a token, reads (models, versions, manifests,
         * blocks over HTTP and Aeron, hints, endpoints) need a token too unless {@link #openReads}. Null (the default)
         * is an open service, for tests and development.
         */
        public Context token(final String t)
        {
            this.token = t;
            return this;
        }

        /**
         * A second, read-only token for compute nodes: it reads (as above) and takes and releases leases, and
         * nothing else, so that a node does not hold the admin token. None by default.
         */
        public Context readToken(final String t)
        {
            this.readToken = t;
            return this;
        }

        /** The read-only node token, or null. */
        public String readToken()
        {
            return readToken;
        }

        /** Let anyone who reaches the service read weights (a trusted network); reads need a token by default. */
        public Context openReads(final boolean open)
        {
            this.openReads = open;
            return this;
        }

        /** The interface the admin API listens on ({@code 127.0.0.1} by default; {@code 0.0.0.0} for all). */
        public Context bindAddress(final String address)
        {
            this.bindAddress = address;
            return this;
        }

        /**
         * Requests with a body (block uploads, commits, missing-block lists) served at once (16 by default, of the
         * admin API's 32 threads): one more is answered 503 at once, so that slow uploads never take the threads
         * health checks, lease renewals and reads need.
         */
        public Context uploadSlots(final int slots)
        {
            this.uploadSlots = slots;
            return this;
        }

        /**
         * The longest a request body may take to arrive (30 s by default; also the connection idle timeout): a body
         * still arriving after it is answered 408 and its connection closed.
         */
        public Context maxBodyMillis(final long millis)
        {
            this.maxBodyMillis = millis;
            return this;
        }

        /**
         * How long an upload may stay uncommitted (24 h by default, counted from its begin or last resume in this
         * process): an older one is abandoned and deleted at the next begin or gc, so it no longer blocks gc.
         */
        public Context uploadExpiryMillis(final long millis)
        {
            this.uploadExpiryMillis = millis;
            return this;
        }

        /** Whether reads need a token: a token is set and reads were not opened. */
        public boolean protectsReads()
        {
            return token != null && !token.isEmpty() && !openReads;
        }

        /** The memory tier's budget (1 GiB by default). */
        public Context memoryBudgetBytes(final long bytes)
        {
            this.memoryBudgetBytes = bytes;
            return this;
        }

        /** The SSD tier's budget (16 GiB by default). */
        public Context ssdBudgetBytes(final long bytes)
        {
            this.ssdBudgetBytes = bytes;
            return this;
        }

        /** {@code host:port} of the block server's UDP endpoint ({@code localhost:0} by default). */
        public Context udpEndpoint(final String endpoint)
        {
            this.udpEndpoint = endpoint;
            return this;
        }

        /** An S3-compatible object tier instead of {@code dataDir/objects} (the default). */
        public Context s3(final S3 store)
        {
            this.s3 = store;
            return this;
        }

        /**
         * Caps the block server's sends at this many bytes of payload per second (0, the default: no cap), to stand
         * for a network link between node and service when both run on one host ({@code bench stream --link-gbps}).
         */
        public Context linkBytesPerSecond(final long bytesPerSecond)
        {
            this.linkBytesPerSecond = bytesPerSecond;
            return this;
        }

        /** A transport shared with other roles of this process; by default the service launches its own. */
        public Context transport(final Transport shared)
        {
            this.transport = shared;
            return this;
        }

        /** A registry shared with other roles of this process; by default the service has its own. */
        public Context meterRegistry(final PrometheusMeterRegistry shared)
        {
            this.meterRegistry = shared;
            return this;
        }

        /** The data directory. */
        public Path dataDirPath()
        {
            return dataDir;
        }

        /** The UDP endpoint as configured ({@code host:port}, port 0 for any). */
        public String udpEndpointSetting()
        {
            return udpEndpoint;
        }

        /** The memory tier's budget at launch. */
        public long memoryBudget()
        {
            return memoryBudgetBytes;
        }

        /** The SSD tier's budget at launch. */
        public long ssdBudget()
        {
            return ssdBudgetBytes;
        }

        /** The block server's bandwidth cap at launch (0: none). */
        public long linkBytes()
        {
            return linkBytesPerSecond;
        }

        /**
         * Validates every setting once.
         *
         * @throws IllegalArgumentException naming the first bad value.
         */
        public Context conclude()
        {
            if (concluded)
            {
                return this;
            }
            if (dataDir == null)
            {
                throw new IllegalArgumentException("invalid dataDir=null: the service needs a data directory");
            }
            if (adminPort < 0 || adminPort > 65_535)
            {
                throw new IllegalArgumentException("invalid adminPort=" + adminPort);
            }
            if (memoryBudgetBytes < MAX_BLOCK_BYTES)
            {
                throw new IllegalArgumentException("invalid memoryBudgetBytes=" + memoryBudgetBytes + " (at least " +
                    MAX_BLOCK_BYTES + ", the largest block)");
            }
            if (ssdBudgetBytes < MAX_BLOCK_BYTES)
            {
                throw new IllegalArgumentException("invalid ssdBudgetBytes=" + ssdBudgetBytes + " (at least " +
                    MAX_BLOCK_BYTES + ", the largest block)");
            }
            if (udpEndpoint == null || !udpEndpoint.contains(":"))
            {
                throw new IllegalArgumentException("invalid udpEndpoint=" + udpEndpoint + " (host:port)");
            }
            if (linkBytesPerSecond < 0)
            {
                throw new IllegalArgumentException("invalid linkBytesPerSecond=" + linkBytesPerSecond);
            }
            if (readToken != null && (token == null || token.isEmpty()))
            {
                throw new IllegalArgumentException("invalid readToken: a read token needs an admin token");
            }
            if (readToken != null && (readToken.length() < 8 || readToken.equals(token)))
            {
                throw new IllegalArgumentException("invalid readToken: at least 8 characters, and not the admin token");
            }
            if (uploadSlots < 1 || uploadSlots > AdminServer.THREADS - 8)
            {
                throw new IllegalArgumentException("invalid uploadSlots=" + uploadSlots + " (1.." +
                    (AdminServer.THREADS - 8) + ": the rest of the admin API's threads stay for reads and leases)");
            }
            if (uploadExpiryMillis < 1)
            {
                throw new IllegalArgumentException("invalid uploadExpiryMillis=" + uploadExpiryMillis);
            }
            if (maxBodyMillis < 100)
            {
                throw new IllegalArgumentException("invalid maxBodyMillis=" + maxBodyMillis + " (at least 100)");
            }
            if (bindAddress == null || bindAddress.isBlank())
            {
                throw new IllegalArgumentException("invalid bindAddress=" + bindAddress);
            }
            concluded = true;
            return this;
        }
    }

    private final Context ctx;
    private final long startedNanos = System.nanoTime();
    private final FileChannel lockChannel;
    private final FileLock lock;
    private final PrometheusMeterRegistry metrics;
    private final boolean ownsMetrics;
    private final MemoryTier memory;
    private final RocksDbTier ssd;
    private final Tier object;
    private final BlockIndex index;
    private final TieredBlockStore store;
    private final RegistryLog registryLog;
    private final ManifestStore manifests;
    /** The blocks of every visible version, a snapshot the block server reads without a lock. */
    private final VersionCatalog catalog = new VersionCatalog();
    /** When each uncommitted upload ({@code model@n}) began or last resumed in this process. Guarded by this. */
    private final Map<String, Long> uploadsTouched = new java.util.HashMap<>();
    /** Blocks of deleted versions not yet collected (an upload was in progress). Guarded by this. */
    private final Set<BlockId> pendingGarbage = new HashSet<>();
    private long blocksCollected;
    private final Transport transport;
    private final boolean ownsTransport;
    private final BlockServer blockServer;
    private final AgentRunner blockServerRunner;
    private final ServiceInfo.Endpoints endpoints;
    private final AdminServer admin;
    private final Dashboard dashboard;

    /**
     * Opens, in order, the data directory's lock, the tiers, the index and store, the registry log, the transport
     * (unless shared), the block server's agent and the admin API. Each resource is added to {@code opened} as
     * soon as it exists, so that {@link #launch} closes exactly what was opened when a later step fails.
     */
    private ParamService(final Context ctx, final List<AutoCloseable> opened) throws Exception
    {
        this.ctx = ctx;
        createPrivateDirectory(ctx.dataDir);
        lockChannel = FileChannel.open(ctx.dataDir.resolve("lock"), StandardOpenOption.CREATE,
            StandardOpenOption.WRITE);
        opened.add(lockChannel);
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
            throw new IOException("data directory " + ctx.dataDir + " is in use by another parameter service");
        }
        lock = l;
        opened.add(lock);
        ownsMetrics = ctx.meterRegistry == null;
        metrics = ownsMetrics ? new PrometheusMeterRegistry(PrometheusConfig.DEFAULT) : ctx.meterRegistry;
        if (ownsMetrics)
        {
            opened.add(metrics::close);
        }
        memory = add(opened, new MemoryTier(ctx.memoryBudgetBytes, EvictionPolicy.costAware()));
        ssd = add(opened, RocksDbTier.openOrReplace(ctx.dataDir.resolve("ssd"), ctx.ssdBudgetBytes));
        final S3 s3 = ctx.s3;
        object = add(opened, s3 == null ? new DirectoryObjectTier(ctx.dataDir.resolve("objects")) :
            new dev.strata.tiering.S3ObjectTier(s3.endpoint(), s3.region(), s3.bucket(), s3.accessKey(),
                s3.secretKey(), s3.prefix()));
        index = add(opened, BlockIndex.open(ctx.dataDir.resolve("block-index.dat"),
            Math.max(object.ids().size(), ssd.ids().size())));
        store = add(opened, TieredBlockStore.open(new TieredBlockStore.Context()
            .memory(memory).ssd(ssd).object(object).index(index).maxBlockBytes(MAX_BLOCK_BYTES).prefetchThreads(2)
            .meterRegistry(metrics)));
        manifests = new ManifestStore(ctx.dataDir.resolve("manifests"));
        registryLog = add(opened, new RegistryLog(ctx.dataDir.resolve("registry.log")));
        synchronized (this)
        {
            publishCatalog();
        }

        ownsTransport = ctx.transport == null;
        transport = ownsTransport ? add(opened, Transport.launch(new TransportContext())) : ctx.transport;
        final Subscription ipc = add(opened, transport.subscription(TransportContext.IPC_CHANNEL, REQUEST_STREAM));
        final Subscription udp = add(opened,
            transport.subscription("aeron:udp?endpoint=" + ctx.udpEndpoint, REQUEST_STREAM));
        final String udpChannel = resolveEndpoint(udp);
        endpoints = new ServiceInfo.Endpoints(transport.context().aeronDirectory(), TransportContext.IPC_CHANNEL,
            udpChannel, REQUEST_STREAM);
        blockServer = new BlockServer(store, List.of(ipc, udp), transport.aeron(), catalog)
            .requireToken(ctx.protectsReads() ? ctx.token : null, ctx.protectsReads() ? ctx.readToken : null).linkBytesPerSecond(ctx.linkBytesPerSecond);
        blockServerRunner = add(opened, new AgentRunner(blockServer.idleStrategy(), blockServer::onAgentError, null,
            blockServer));
        AgentRunner.startOnThread(blockServerRunner);

        Gauge.builder("strata.blocks.served", blockServer, BlockServer::served).register(metrics);
        Gauge.builder("strata.blocks.collected", this, ParamService::blocksCollected).register(metrics);
        Gauge.builder("strata.blocks.served.bytes", blockServer, BlockServer::servedBytes).register(metrics);
        Gauge.builder("strata.requests.rejected", blockServer, BlockServer::rejected).register(metrics);
        Gauge.builder("strata.requests.dropped", blockServer, BlockServer::dropped).register(metrics);
        Gauge.builder("strata.prefetch.hints", blockServer, BlockServer::hinted).register(metrics);
        Gauge.builder("strata.agent.errors", blockServer, BlockServer::errors).register(metrics);
        Gauge.builder("strata.models", this, s -> s.models().size()).register(metrics);

        admin = add(opened, new AdminServer(this, ctx.bindAddress, ctx.adminPort, ctx.token, ctx.readToken,
            ctx.protectsReads(), ctx.uploadSlots, ctx.maxBodyMillis));
        dashboard = add(opened, new Dashboard(this, ctx.token, ctx.protectsReads(), System::currentTimeMillis));
        admin.dashboard(dashboard);
    }

    /**
     * Creates the data directory readable by its owner only (0700): blocks are model weights. An existing directory
     * open to others is narrowed to 0700, with a warning.
     */
    private static void createPrivateDirectory(final Path dir) throws IOException
    {
        final java.util.Set<java.nio.file.attribute.PosixFilePermission> owner =
            java.nio.file.attribute.PosixFilePermissions.fromString("rwx------");
        if (!Files.exists(dir))
        {
            if (dir.getParent() != null)
            {
                Files.createDirectories(dir.getParent());
            }
            try
            {
                Files.createDirectory(dir, java.nio.file.attribute.PosixFilePermissions.asFileAttribute(owner));
                Files.setPosixFilePermissions(dir, owner); // the umask may have narrowed the attribute
            }
            catch (final UnsupportedOperationException notPosix)
            {
                Files.createDirectories(dir);
            }
            return;
        }
        try
        {
            if (!Files.getPosixFilePermissions(dir).equals(owner))
            {
                Files.setPosixFilePermissions(dir, owner);
                System.getLogger(ParamService.class.getName()).log(System.Logger.Level.WARNING, "data directory " +
                    dir + " was open to other users: narrowed to 0700");
            }
        }
        catch (final UnsupportedOperationException notPosix)
        {
            // no POSIX permissions on this file system
        }
    }

    private static <T extends AutoCloseable> T add(final List<AutoCloseable> opened, final T resource)
    {
        opened.add(resource);
        return resource;
    }

    /** The UDP endpoint's resolved address: the driver binds it asynchronously, so wait (bounded) for it. */
    private static String resolveEndpoint(final Subscription udp) throws IOException
    {
        final long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
        String channel;
        while ((channel = udp.tryResolveChannelEndpointPort()) == null)
        {
            if (System.nanoTime() > deadline)
            {
                throw new IOException("could not bind the UDP endpoint " + udp.channel());
            }
            Thread.onSpinWait();
            Thread.yield();
        }
        return channel;
    }

    /**
     * Opens the data directory (replaying the registry) and starts the block server and admin API. If any step
     * fails, everything opened before it is closed, in reverse order, and the failure is rethrown.
     */
    public static ParamService launch(final Context context) throws Exception
    {
        context.conclude();
        final List<AutoCloseable> opened = new ArrayList<>();
        try
        {
            final ParamService service = new ParamService(context, opened);
            service.opened = opened;
            return service;
        }
        catch (final Exception | Error ex)
        {
            closeReversed(opened, ex);
            throw ex;
        }
    }

    /** What {@link #close} closes, in the order it was opened. */
    private List<AutoCloseable> opened;

    private static void closeReversed(final List<AutoCloseable> opened, final Throwable cause)
    {
        for (int i = opened.size() - 1; i >= 0; i--)
        {
            try
            {
                opened.get(i).close();
            }
            catch (final Exception ex)
            {
                if (cause != null)
                {
                    cause.addSuppressed(ex);
                }
            }
        }
    }

    public Context context()
    {
        return ctx;
    }

    public int adminPort()
    {
        return admin.port();
    }

    public ServiceInfo.Endpoints endpoints()
    {
        return endpoints;
    }

    public PrometheusMeterRegistry metrics()
    {
        return metrics;
    }

    /** The transport the service's Aeron endpoints live on (its own or the shared one). */
    dev.strata.transport.Transport transportForDashboard()
    {
        return transport;
    }

    /** The memory tier, for the dashboard's knobs (budget, eviction policy). */
    MemoryTier memoryTier()
    {
        return memory;
    }

    /** The SSD tier, for the dashboard's budget knob. */
    RocksDbTier ssdTier()
    {
        return ssd;
    }

    /** The dashboard: node statistics history, knobs, replay. */
    Dashboard dashboard()
    {
        return dashboard;
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
        // a stored copy counts only if it is good: a bad one is quarantined by the scrub and replaced below
        if (object.contains(claimed) && store.scrub(claimed))
        {
            return false;
        }
        store.put(claimed, MemorySegment.ofArray(bytes));
        return true;
    }

    // ---- versions

    /**
     * Starts (or resumes, for the same manifest) an upload; returns the version and whether it resumed. A manifest
     * a visible version already has names that version (not uploading): the upload then sends only the blocks the
     * service lacks, such as quarantined ones, and its commit is a no-op, so re-uploading a file heals its version.
     */
    public synchronized Map.Entry<ModelRegistry.Version, Boolean> beginUpload(final String model,
        final String manifestDigest) throws IOException
    {
        expireUploads();
        final Map.Entry<ModelRegistry.Version, Boolean> begun = beginOrResume(model, manifestDigest);
        if (begun.getKey().state() == VersionState.UPLOADING)
        {
            uploadsTouched.put(model + "@" + begun.getKey().number(), System.nanoTime());
        }
        return begun;
    }

    /**
     * Deletes uploads uncommitted for longer than the expiry (counted from their begin or last resume in this process;
     * an upload left by an earlier process counts from this one's start). Holds the lock.
     */
    private void expireUploads() throws IOException
    {
        final long now = System.nanoTime();
        final long expiry = java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(ctx.uploadExpiryMillis);
        for (final String model : registryLog.registry().models())
        {
            for (final ModelRegistry.Version v : registryLog.registry().versionsOf(model))
            {
                if (v.state() != VersionState.UPLOADING)
                {
                    continue;
                }
                final String key = model + "@" + v.number();
                final long since = uploadsTouched.computeIfAbsent(key, k -> startedNanos);
                if (now - since > expiry)
                {
                    registryLog.execute(new RegistryCommand.Delete(model, v.number(), System.currentTimeMillis()));
                    uploadsTouched.remove(key);
                    System.getLogger(ParamService.class.getName()).log(System.Logger.Level.INFO, "upload " + key +
                        " expired uncommitted: deleted");
                }
            }
        }
    }

    private Map.Entry<ModelRegistry.Version, Boolean> beginOrResume(final String model, final String manifestDigest)
        throws IOException
    {
        final ModelRegistry.Version existing = registryLog.registry().uploading(ModelRegistry.checkName(model),
            manifestDigest);
        if (existing != null)
        {
            return Map.entry(existing, true);
        }
        final ModelRegistry.Version committed = visibleWithManifest(model, manifestDigest);
        if (committed != null)
        {
            return Map.entry(committed, true);
        }
        return Map.entry(registryLog.execute(new RegistryCommand.CreateVersion(model, manifestDigest)), false);
    }

    /**
     * Commits an uploaded version: the manifest must hash to the digest the upload began with, name this model,
     * and every block it names must be durable in the object tier. A model's first committed version (or any
     * committed while it has no active version) becomes its active version (label {@code stable}), a logged promote.
     */
    public synchronized ModelRegistry.Version commit(final String model, final int version, final byte[] encoded)
        throws IOException
    {
        final String digest = BlockId.of(encoded).hex();
        final ModelRegistry.Version done = visibleWithManifest(model, digest);
        if (done != null && done.number() == version && missing(Manifest.decode(encoded).allBlocks()).isEmpty())
        {
            return done; // committed already (by a concurrent upload of the same file, or a heal): nothing to do
        }
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
            throw new RegistryException(RegistryException.Kind.CONFLICT, "cannot commit " + model + "@" + version + ": " + missing.size() +
                " blocks are not uploaded yet (first: " + missing.getFirst() + ")");
        }
        manifests.write(digest, encoded);
        ModelRegistry.Version committed = registryLog.execute(new RegistryCommand.Commit(model, version, digest));
        uploadsTouched.remove(model + "@" + version);
        if (registryLog.registry().active(model) == null)
        {
            // the first committed version of a model with no active one becomes active, so the bare name works
            committed = registryLog.execute(new RegistryCommand.Promote(model, version));
        }
        publishCatalog();
        collectGarbage(); // what a delete during this upload left
        return committed;
    }

    public synchronized ModelRegistry.Version execute(final RegistryCommand command) throws IOException
    {
        Manifest deleted = null;
        if (command instanceof RegistryCommand.Delete d)
        {
            try
            {
                deleted = committedManifest(d.model(), d.version());
            }
            catch (final IOException ex)
            {
                // a version whose manifest is damaged can still be removed; its blocks are left to gc
                System.getLogger(ParamService.class.getName()).log(System.Logger.Level.WARNING, "deleting " +
                    d.model() + "@" + d.version() + " without collecting its blocks: " + ex.getMessage());
            }
        }
        final ModelRegistry.Version v = registryLog.execute(command);
        publishCatalog();
        if (command instanceof RegistryCommand.Delete)
        {
            if (deleted != null)
            {
                pendingGarbage.addAll(deleted.allBlocks());
                collectGarbage();
            }
        }
        return v;
    }

    /** The newest visible (committed, not deleted) version of a model with this manifest, or null. Holds the lock. */
    private ModelRegistry.Version visibleWithManifest(final String model, final String digest)
    {
        if (!registryLog.registry().models().contains(model))
        {
            return null;
        }
        ModelRegistry.Version found = null;
        for (final ModelRegistry.Version v : registryLog.registry().versionsOf(model))
        {
            if (v.state() != VersionState.UPLOADING && v.state() != VersionState.DELETED &&
                v.manifestDigest().equals(digest))
            {
                found = v;
            }
        }
        return found;
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
        expireUploads();
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
                    throw new RegistryException(RegistryException.Kind.CONFLICT, "an upload is in progress (" + model + "@" + v.number() + "): " +
                        "collect after it commits, or delete it (strata model rm " + model + "@" + v.number() +
                        "); an abandoned upload expires " + java.time.Duration.ofMillis(ctx.uploadExpiryMillis) +
                        " after its begin");
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
        return manifests.manifest(v);
    }

    /** The binary manifest of a visible version, checked against its digest. */
    public byte[] manifestBytes(final ModelRegistry.Version v) throws IOException
    {
        return manifests.read(v);
    }

    /** For the block server: the blocks of {@code model@number}, or null when it is not a visible version. */
    Set<BlockId> blocksOf(final String modelVersion)
    {
        return catalog.blocksOf(modelVersion);
    }

    /** Republishes the catalog the block server reads. Holds the lock. */
    private void publishCatalog() throws IOException
    {
        catalog.publish(registryLog.registry(), manifests);
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

    /** Stops the admin API and block server and closes everything the service opened, in reverse order. */
    @Override
    public void close()
    {
        final List<AutoCloseable> all = opened;
        opened = List.of();
        closeReversed(all, null);
    }
}
