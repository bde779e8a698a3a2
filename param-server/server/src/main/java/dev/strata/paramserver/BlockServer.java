package dev.strata.paramserver;

import dev.strata.paramclient.BlockClient;

import dev.strata.transport.BlockId;
import dev.strata.transport.bulk.BulkChunkWriter;
import dev.strata.transport.bulk.BulkFrame;
import dev.strata.transport.bulk.SharedRegion;
import dev.strata.tiering.BlockStoreException;
import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.sbe.BlockRequestDecoder;
import dev.strata.transport.sbe.CancelRequestDecoder;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.PrefetchHintDecoder;
import dev.strata.transport.sbe.Status;
import io.aeron.Aeron;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Serves blocks over Aeron. Reads {@code BlockRequest}s (each names a pinned model version, its blocks, and
 * the channel and stream its client listens on) and answers with one bulk transfer of the transport's bulk layer
 * ({@link BulkFrame} chunks of at most {@link #CHUNK_BYTES} payload with their CRC32C; the transfer id is the
 * request's correlation id, each block a part), which the client reassembles straight into its memory. What is
 * specific to blocks stays here: a block that cannot be served gets one SBE {@code BlockChunk} with an error
 * status ({@code UNKNOWN_VERSION}, {@code NOT_IN_VERSION}, {@code UNKNOWN_BLOCK}, {@code CORRUPT},
 * {@code UNAVAILABLE}, {@code BUSY}) and the server goes on.
 * <p>
 * Scheduling: requests wait in two queues, demand (priority 0, first come first served) and prefetch
 * (priority &gt; 0, earliest needed first: each prefetch says when its client expects to need it); every chunk
 * sent is taken from the demand queue when it is not empty, so a demand fetch overtakes a large prefetch
 * mid-block. The agent never blocks: a back-pressured or not-yet-connected client is set aside for the rest of
 * the duty cycle; a request is dropped when its client's timeout has passed or when its client cancels it
 * ({@code CancelRequest}). {@code PrefetchHint}s promote blocks of a version through the store's tiers, with no reply.
 * <p>
 * Payload is offered straight from the memory tier's off-heap copy (a two-buffer offer: frame header, then the
 * block's bytes), so a chunk is copied once, into the Aeron log buffer; its checksum is computed once per block and
 * kept, since blocks never change. Runs on one thread, as an {@link Agent}.
 */
public final class BlockServer implements Agent
{
    /**
     * Payload bytes per chunk: what one frame of the 65,504-byte MTU the clients' response channels use (see
     * {@link BlockClient}) carries after Aeron's and the bulk frame's headers, so no chunk is fragmented and none is
     * copied for reassembly. A channel with a smaller MTU still works, through the client's fragment assembler.
     */
    public static final int CHUNK_BYTES = BulkFrame.MAX_MTU_CHUNK_BYTES;
    /** Blocks whose chunk checksums are kept (4 bytes per chunk): beyond, the cache starts again. */
    private static final int CRC_CACHE_BLOCKS = 1 << 16;
    /** Requests held at most; beyond, new requests are answered {@code BUSY}. */
    static final int MAX_PENDING = 4096;
    private static final int CHUNKS_PER_DUTY_CYCLE = 16;
    private static final long CONNECT_GRACE_NS = 5_000_000_000L;
    private static final System.Logger LOG = System.getLogger(BlockServer.class.getName());
    /** {@link #pin}'s answer while a cold read is running (never sent: not a status of the wire). */
    private static final Status LOADING = Status.NULL_VAL;
    /**
     * The default loader: a few daemon threads for SSD and object-storage reads, shared by the servers of a
     * process. Reads are I/O-bound; the pool bounds how many run at once.
     */
    private static final Executor DEFAULT_LOADER = Executors.newFixedThreadPool(4,
        Thread.ofPlatform().daemon().name("strata-block-loader-", 0).factory());

    /** Which blocks a model version consists of. */
    @FunctionalInterface
    public interface Catalog
    {
        /** @return the version's block ids, or {@code null} when no such version is visible. */
        Set<BlockId> blocksOf(String modelVersion);
    }

    private final TieredBlockStore store;
    private final List<Subscription> requests;
    private final Aeron aeron;
    private final Catalog catalog;
    private final FragmentAssembler[] assemblers;
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final BlockRequestDecoder requestDecoder = new BlockRequestDecoder();
    private final CancelRequestDecoder cancelDecoder = new CancelRequestDecoder();
    private final PrefetchHintDecoder hintDecoder = new PrefetchHintDecoder();
    private final byte[] digest = new byte[BlockId.DIGEST_BYTES];
    private final ChunkWriter writer = new ChunkWriter();
    private final BulkChunkWriter chunks = new BulkChunkWriter();
    /**
     * CRC32C of every chunk of recently served blocks. Blocks are immutable and named by their SHA-256, so a chunk's
     * checksum never changes: computed on a block's first send, it saves a pass over every later send's bytes (the
     * client still checks every chunk against it).
     */
    private final HashMap<BlockId, int[]> chunkCrcs = new HashMap<>();
    /** Clients' shared regions for direct placement, by name, least recently used first. */
    private final java.util.LinkedHashMap<String, SharedRegion> regions = new java.util.LinkedHashMap<>(16, 0.75f, true);
    private static final int MAX_REGIONS = 256;
    private long lastRegionSweep = System.nanoTime();
    /** The link cap, or null for none. */
    private volatile TokenBucket link;
    private final ArrayDeque<Pending> demand = new ArrayDeque<>();
    /** Earliest needed first; among equals, first come first served. */
    private final PriorityQueue<Pending> prefetch = new PriorityQueue<>((a, b) ->
        a.neededByNanos != b.neededByNanos ? Long.compare(a.neededByNanos, b.neededByNanos) :
            Long.compare(a.sequence, b.sequence));
    /** Requests whose client could not take a chunk in this duty cycle. */
    private final List<Pending> blocked = new ArrayList<>();
    private long sequence;
    /** A chunk could not be offered in this duty cycle because its client's publication was full. */
    private boolean backPressured;
    private final Map<String, Publication> publications = new HashMap<>();

    /** The token every request, cancel and hint must carry when the service protects reads. */
    private TokenCheck token = new TokenCheck(null);
    private volatile long served;
    private volatile long servedBytes;
    private volatile long placedBytes;
    private volatile long rejected;
    private volatile long dropped;
    private volatile long hinted;
    private volatile long cancelled;
    private volatile long coldReads;
    private final AtomicLong errors = new AtomicLong();
    /** Where cold blocks are read (SSD, object storage): never on the agent's thread. */
    private final Executor loader;

    public BlockServer(final TieredBlockStore store, final Subscription requests, final Aeron aeron,
        final Catalog catalog)
    {
        this(store, List.of(requests), aeron, catalog);
    }

    /** Serves requests arriving on any of {@code requests} (for example one IPC and one UDP subscription). */
    public BlockServer(final TieredBlockStore store, final List<Subscription> requests, final Aeron aeron,
        final Catalog catalog)
    {
        this(store, requests, aeron, catalog, DEFAULT_LOADER);
    }

    /**
     * As above, with the executor that reads blocks not in the memory tier (the agent only starts such a read and
     * serves the block when it is ready; meanwhile it serves other requests).
     */
    public BlockServer(final TieredBlockStore store, final List<Subscription> requests, final Aeron aeron,
        final Catalog catalog, final Executor loader)
    {
        this.loader = loader;
        this.store = store;
        this.requests = List.copyOf(requests);
        this.assemblers = new FragmentAssembler[requests.size()];
        for (int i = 0; i < assemblers.length; i++)
        {
            assemblers[i] = new FragmentAssembler(this::onFragment); // reassembly state is per image and stream
        }
        this.aeron = aeron;
        this.catalog = catalog;
    }

    /**
     * Caps what this server sends at {@code bytesPerSecond} of block payload (a token bucket with 1 ms of burst,
     * at least one chunk), to stand for a network link of that bandwidth; 0 for no cap. May be called while the
     * agent runs (the dashboard's bandwidth knob): the next chunk sees the new cap.
     */
    public BlockServer linkBytesPerSecond(final long bytesPerSecond)
    {
        this.link = bytesPerSecond <= 0 ? null :
            new TokenBucket(bytesPerSecond, Math.max(CHUNK_BYTES, bytesPerSecond / 1000), System.nanoTime());
        return this;
    }

    /**
     * Requires {@code required} in every request and hint (a service that protects reads); call before the agent
     * starts. Requests without it are answered {@code UNAUTHORIZED}, hints without it are dropped.
     */
    public BlockServer requireToken(final String required)
    {
        return requireToken(required, null);
    }

    /** As {@link #requireToken(String)}, also accepting a second (read-only) token. */
    public BlockServer requireToken(final String required, final String alsoAccepted)
    {
        this.token = new TokenCheck(required, alsoAccepted);
        return this;
    }

    @Override
    public int doWork()
    {
        backPressured = false;
        int work = 0;
        if (!regions.isEmpty())
        {
            final long now = System.nanoTime();
            if (now - lastRegionSweep > 1_000_000_000L)
            {
                lastRegionSweep = now;
                sweepRegions();
            }
        }
        for (int i = 0; i < requests.size(); i++)
        {
            work += requests.get(i).poll(assemblers[i], 16);
        }
        for (int i = 0; i < CHUNKS_PER_DUTY_CYCLE; i++)
        {
            final boolean fromDemand = !demand.isEmpty();
            final Pending p = fromDemand ? demand.peekFirst() : prefetch.peek();
            if (p == null)
            {
                break;
            }
            final int progress = step(p);
            if (progress != 1)
            {
                if (fromDemand)
                {
                    demand.pollFirst();
                }
                else
                {
                    prefetch.poll();
                }
                if (progress < 0) // finished or dropped
                {
                    p.release();
                    if (p.place != null && !p.servedWhole())
                    {
                        // dropped, or with failed blocks: the client fences before reusing the destination
                        writer.sendPlacementEnded(p.publication, p.correlationId);
                    }
                }
                else // the client cannot take more now: the others go first, it is tried again next cycle
                {
                    blocked.add(p);
                    continue;
                }
            }
            work++;
        }
        for (final Pending p : blocked)
        {
            if (p.urgent)
            {
                demand.addLast(p);
            }
            else
            {
                prefetch.add(p);
            }
        }
        blocked.clear();
        return work;
    }

    /**
     * The idle strategy to run this agent with: while a client's publication is full (the client still reading
     * what was sent) it yields, so a client that drains its window finds the next chunk at once instead of after a
     * park of up to a millisecond (a 4 MiB block moves in about one); with nothing pending it backs off to parking
     * up to 1 ms, so an idle service, or one waiting for a cold read, costs no CPU.
     */
    public IdleStrategy idleStrategy()
    {
        final BackoffIdleStrategy backoff = new BackoffIdleStrategy();
        return new IdleStrategy()
        {
            @Override
            public void idle(final int workCount)
            {
                if (workCount > 0)
                {
                    backoff.reset();
                }
                else
                {
                    idle();
                }
            }

            @Override
            public void idle()
            {
                if (backPressured)
                {
                    Thread.yield();
                }
                else
                {
                    backoff.idle();
                }
            }

            @Override
            public void reset()
            {
                backoff.reset();
            }
        };
    }

    @Override
    public void onClose()
    {
        demand.forEach(Pending::release);
        prefetch.forEach(Pending::release);
        demand.clear();
        prefetch.clear();
        publications.values().forEach(Publication::close);
        publications.clear();
        regions.values().forEach(SharedRegion::close);
        regions.clear();
    }

    @Override
    public String roleName()
    {
        return "strata-block-server";
    }

    /** Blocks served whole. */
    public long served()
    {
        return served;
    }

    public long servedBytes()
    {
        return servedBytes;
    }

    /** Bytes copied straight into clients' shared regions (direct placement) instead of sent as chunks. */
    public long placedBytes()
    {
        return placedBytes;
    }

    /** Requests refused as malformed or because the server was full. */
    public long rejected()
    {
        return rejected;
    }

    /** Requests dropped after their client's timeout. */
    public long dropped()
    {
        return dropped;
    }

    /** Requests dropped unfinished because their client cancelled them. */
    public long cancelled()
    {
        return cancelled;
    }

    /** Blocks that were not in the memory tier when their turn came, read off the agent thread. */
    public long coldReads()
    {
        return coldReads;
    }

    /** Unexpected failures of the agent (bugs, not bad messages): logged and counted, never silent. */
    public long errors()
    {
        return errors.get();
    }

    /** The agent's error handler: counts and logs through the platform logger (no stack trace on stderr). */
    public void onAgentError(final Throwable ex)
    {
        errors.incrementAndGet();
        LOG.log(System.Logger.Level.ERROR, "block server error", ex);
    }

    /** Blocks named by prefetch hints and handed to the store to promote. */
    public long hinted()
    {
        return hinted;
    }

    /** Sends the next chunk of a request: 1 if sent, 0 if the client cannot take it now, -1 when done. */
    private int step(final Pending p)
    {
        final long now = System.nanoTime();
        if (now > p.expiresAtNanos)
        {
            dropped++;
            return -1;
        }
        if (!p.publication.isConnected())
        {
            if (now - p.receivedAtNanos > CONNECT_GRACE_NS)
            {
                dropped++;
                return -1;
            }
            return 0;
        }
        if (p.status[p.block] != null)
        {
            if (!writer.sendStatus(p.publication, p.correlationId, p.block, p.status[p.block]))
            {
                return 0;
            }
            return advance(p);
        }
        if (p.pinned == null)
        {
            final Status failure = pin(p);
            if (failure == LOADING)
            {
                return 0; // read off the agent thread; the others go first
            }
            if (failure != null)
            {
                p.status[p.block] = failure;
                return 1;
            }
        }
        final MemorySegment bytes = p.pinned.bytes();
        final long total = bytes.byteSize();
        final int n = (int)Math.min(CHUNK_BYTES, total - p.offset);
        final TokenBucket cap = link;
        if (cap != null && !cap.tryTake(n, now))
        {
            return 0; // over the link's bandwidth: this chunk waits for the bucket to refill
        }
        if (p.crcs == null)
        {
            p.crcs = chunkCrcs(p.ids.get(p.block), bytes);
        }
        if (p.place != null)
        {
            return place(p, bytes, total, n);
        }
        final long result = chunks.tryOffer(p.publication, p.correlationId, 0, p.block, (int)p.offset,
            bytes.asSlice(p.offset, n), p.crcs[(int)(p.offset / CHUNK_BYTES)] & 0xFFFF_FFFFL);
        if (result < 0)
        {
            backPressured |= result == Publication.BACK_PRESSURED || result == Publication.ADMIN_ACTION;
            return 0;
        }
        return chunkDone(p, n, total);
    }

    /**
     * Direct placement of the next chunk: copied straight into the client's shared region, then announced with its
     * checksum. A notice the client's publication cannot take now is sent on the next try without copying again.
     */
    private int place(final Pending p, final MemorySegment bytes, final long total, final int n)
    {
        if (!p.placedUnannounced)
        {
            try
            {
                MemorySegment.copy(bytes, p.offset, p.place.segment(), p.placeAt[p.block] + p.offset, n);
            }
            catch (final IllegalStateException ex) // the region was unmapped meanwhile (evicted)
            {
                p.status[p.block] = Status.UNAVAILABLE;
                leaveBlock(p);
                return 1;
            }
            p.placedUnannounced = true;
        }
        if (!writer.sendPlaced(p.publication, p.correlationId, p.block, p.offset, total,
            p.crcs[(int)(p.offset / CHUNK_BYTES)]))
        {
            backPressured = true;
            return 0;
        }
        p.placedUnannounced = false;
        placedBytes += n;
        return chunkDone(p, n, total);
    }

    /** A chunk of {@code n} bytes went out (sent or placed): the next one, or the next block when it was the last. */
    private int chunkDone(final Pending p, final int n, final long total)
    {
        p.offset += n;
        if (p.offset < total)
        {
            return 1;
        }
        served++;
        servedBytes += total;
        leaveBlock(p);
        return advance(p);
    }

    /** Lets go of the current block: its pin, position and checksums. */
    private static void leaveBlock(final Pending p)
    {
        p.release();
        p.offset = 0;
        p.crcs = null;
    }

    /** A client's region, mapped once and kept (the least recently used unmapped beyond {@link #MAX_REGIONS}). */
    private SharedRegion region(final String name)
    {
        SharedRegion r = regions.get(name);
        if (r == null)
        {
            try
            {
                r = SharedRegion.open(name);
            }
            catch (final IOException | RuntimeException ex)
            {
                return null;
            }
            if (regions.size() >= MAX_REGIONS)
            {
                final Iterator<Map.Entry<String, SharedRegion>> eldest = regions.entrySet().iterator();
                final SharedRegion old = eldest.next().getValue();
                eldest.remove();
                old.close();
            }
            regions.put(name, r);
        }
        return r;
    }

    /**
     * Unmaps regions whose client deleted them (it freed the buffer, or exited): a deleted tmpfs file keeps its
     * memory while mapped. A region a queued request still names stays.
     */
    private void sweepRegions()
    {
        for (final Iterator<Map.Entry<String, SharedRegion>> it = regions.entrySet().iterator(); it.hasNext(); )
        {
            final SharedRegion r = it.next().getValue();
            if (!r.exists() && !placesInto(demand, r) && !placesInto(prefetch, r))
            {
                it.remove();
                r.close();
            }
        }
    }

    private static boolean placesInto(final java.util.Collection<Pending> queue, final SharedRegion r)
    {
        for (final Pending p : queue)
        {
            if (p.place == r)
            {
                return true;
            }
        }
        return false;
    }

    /** Regions mapped (direct placement). */
    public int mappedRegions()
    {
        return regions.size();
    }

    /** The checksums of a block's chunks, from the cache or computed now. */
    private int[] chunkCrcs(final BlockId id, final MemorySegment bytes)
    {
        int[] crcs = chunkCrcs.get(id);
        if (crcs == null)
        {
            final long total = bytes.byteSize();
            crcs = new int[(int)((total + CHUNK_BYTES - 1) / CHUNK_BYTES)];
            for (int c = 0; c < crcs.length; c++)
            {
                final long at = (long)c * CHUNK_BYTES;
                crcs[c] = BulkFrame.crc32c(bytes.asSlice(at, Math.min(CHUNK_BYTES, total - at)));
            }
            if (chunkCrcs.size() >= CRC_CACHE_BLOCKS)
            {
                chunkCrcs.clear();
            }
            chunkCrcs.put(id, crcs);
        }
        return crcs;
    }

    private static int advance(final Pending p)
    {
        p.block++;
        return p.block >= p.ids.size() ? -1 : 1;
    }

    /**
     * Pins the current block of a request: at once when the memory tier holds it; otherwise a read from below is
     * started on the loader and {@link #LOADING} returned until it completes. Null when pinned, else the error.
     */
    private Status pin(final Pending p)
    {
        if (p.loading == null)
        {
            final BlockId id = p.ids.get(p.block);
            final TieredBlockStore.Pinned resident = store.acquireIfResident(id);
            if (resident != null)
            {
                p.pinned = resident;
                return null;
            }
            coldReads++;
            p.loading = CompletableFuture.supplyAsync(() ->
            {
                try
                {
                    return store.acquire(id);
                }
                catch (final IOException ex)
                {
                    throw new java.io.UncheckedIOException(ex);
                }
            }, loader);
        }
        if (!p.loading.isDone())
        {
            return LOADING;
        }
        final CompletableFuture<TieredBlockStore.Pinned> done = p.loading;
        p.loading = null;
        try
        {
            p.pinned = done.join();
            return null;
        }
        catch (final java.util.concurrent.CompletionException ex)
        {
            final Throwable cause = ex.getCause() instanceof java.io.UncheckedIOException u ? u.getCause() :
                ex.getCause();
            if (cause instanceof BlockStoreException b)
            {
                return switch (b.reason())
                {
                    case UNKNOWN -> Status.UNKNOWN_BLOCK;
                    case CORRUPT -> Status.CORRUPT;
                    case UNAVAILABLE -> Status.UNAVAILABLE;
                };
            }
            if (!(cause instanceof IOException))
            {
                onAgentError(cause);
            }
            return Status.UNAVAILABLE;
        }
    }

    private void onFragment(final DirectBuffer buffer, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        if (length < MessageHeaderDecoder.ENCODED_LENGTH)
        {
            rejected++;
            return;
        }
        headerDecoder.wrap(buffer, offset);
        if (headerDecoder.schemaId() != BlockRequestDecoder.SCHEMA_ID)
        {
            rejected++; // not a message of ours: ignore rather than fail the server
            return;
        }
        try
        {
            if (headerDecoder.templateId() == BlockRequestDecoder.TEMPLATE_ID)
            {
                onRequest(buffer, offset, length);
            }
            else if (headerDecoder.templateId() == PrefetchHintDecoder.TEMPLATE_ID)
            {
                onHint(buffer, offset);
            }
            else if (headerDecoder.templateId() == CancelRequestDecoder.TEMPLATE_ID)
            {
                onCancel(buffer, offset);
            }
            else
            {
                rejected++;
            }
        }
        catch (final IndexOutOfBoundsException ex) // a malformed message (lengths past its end): drop it
        {
            rejected++;
        }
        catch (final RuntimeException ex) // a bug here, not a bad message: count and log it, keep serving
        {
            onAgentError(ex);
        }
    }

    private void onRequest(final DirectBuffer buffer, final int offset, final int length)
    {
        final int end = offset + length; // var data past it (a client that wrote less) is not read
        requestDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        final long correlationId = requestDecoder.correlationId();
        final long timeout = Math.clamp(requestDecoder.timeoutNanos(), 0, 600_000_000_000L);
        final short priority = requestDecoder.priority();
        final int responseStream = requestDecoder.responseStreamId();
        final List<BlockId> ids = new ArrayList<>();
        final List<Long> placeAt = new ArrayList<>();
        boolean malformed = false;
        for (final BlockRequestDecoder.BlocksDecoder block : requestDecoder.blocks())
        {
            block.getDigest(digest, 0, BlockId.DIGEST_BYTES);
            placeAt.add(block.placeAt());
            final long contentLength = block.contentLength();
            if (contentLength <= 0)
            {
                malformed = true;
                ids.add(null);
            }
            else
            {
                ids.add(new BlockId(digest, contentLength));
            }
        }
        final String version = requestDecoder.modelVersion();
        final String channel = requestDecoder.responseChannel();
        final boolean hasToken = varDataFits(end, true);
        final boolean authorized;
        if (token.required())
        {
            authorized = hasToken && token.matches(requestDecoder.tokenLength(),
                requestDecoder.getToken(token.scratch(), 0, token.scratch().length));
        }
        else
        {
            if (hasToken)
            {
                requestDecoder.skipToken(); // var data is read in order: the placement follows
            }
            authorized = true;
        }
        final String placement = hasToken && varDataFits(end, false) ?
            requestDecoder.placement() : "";
        if (ids.isEmpty() || !channel.startsWith("aeron:"))
        {
            rejected++; // nowhere to answer, or nothing asked
            return;
        }
        final Publication publication = publication(channel, responseStream);
        if (publication == null)
        {
            rejected++;
            return;
        }
        final Status[] status = new Status[ids.size()];
        final Set<BlockId> allowed = demand.size() + prefetch.size() >= MAX_PENDING || !authorized ? null :
            catalog.blocksOf(version);
        for (int i = 0; i < status.length; i++)
        {
            if (!authorized)
            {
                status[i] = Status.UNAUTHORIZED;
            }
            else if (demand.size() + prefetch.size() >= MAX_PENDING)
            {
                status[i] = Status.BUSY;
            }
            else if (ids.get(i) == null)
            {
                status[i] = Status.BAD_REQUEST;
            }
            else if (allowed == null)
            {
                status[i] = Status.UNKNOWN_VERSION;
            }
            else if (!allowed.contains(ids.get(i)))
            {
                status[i] = Status.NOT_IN_VERSION;
            }
        }
        if (malformed || !authorized)
        {
            rejected++;
        }
        final long now = System.nanoTime();
        // a prefetch without a time of need (an older client) is needed last: at its timeout
        final long neededIn = requestDecoder.neededInNanos();
        final long neededBy = now + (neededIn < 0 ? timeout : Math.min(neededIn, timeout));
        final Pending p = new Pending(correlationId, now, now + timeout, neededBy, sequence++, publication, ids,
            status);
        if (!placement.isEmpty() && authorized)
        {
            // direct placement into the client's shared region: every block must fit it, else BAD_REQUEST
            final SharedRegion region = region(placement);
            p.place = region;
            p.placeAt = new long[ids.size()];
            for (int i = 0; i < status.length; i++)
            {
                p.placeAt[i] = placeAt.get(i);
                if (status[i] == null && (region == null || ids.get(i) == null || placeAt.get(i) < 0 ||
                    placeAt.get(i) + ids.get(i).length() > region.segment().byteSize()))
                {
                    status[i] = Status.BAD_REQUEST;
                }
            }
        }
        if (demand.size() + prefetch.size() >= MAX_PENDING)
        {
            rejected++;
            p.urgent = true;
            demand.addFirst(p); // answering BUSY is cheap: do it first
        }
        else if (priority == 0)
        {
            p.urgent = true;
            demand.addLast(p);
        }
        else
        {
            prefetch.add(p);
        }
    }

    /**
     * Whether the request's next var-data field, the token or the placement (its 4-byte length, read only once that
     * fits, and its bytes), lies within the message ending at {@code end}: a client that wrote fewer fields is not
     * read past its end.
     */
    private boolean varDataFits(final int end, final boolean token)
    {
        final int at = requestDecoder.limit();
        return at + 4 <= end &&
            at + 4L + (token ? requestDecoder.tokenLength() : requestDecoder.placementLength()) <= end;
    }

    /** Drops the rest of a request its client no longer wants (a prefetch that turned out useless). */
    private void onCancel(final DirectBuffer buffer, final int offset)
    {
        cancelDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        final long correlationId = cancelDecoder.correlationId();
        final int responseStream = cancelDecoder.responseStreamId();
        final String channel = cancelDecoder.responseChannel();
        if (token.required() &&
            !token.matches(cancelDecoder.tokenLength(), cancelDecoder.getToken(token.scratch(), 0, token.scratch().length)))
        {
            rejected++;
            return;
        }
        final Publication publication = publications.get(publicationKey(channel, responseStream));
        if (publication == null)
        {
            return; // nothing was ever asked on that channel, or it is all served
        }
        if (cancel(demand, correlationId, publication) || cancel(prefetch, correlationId, publication))
        {
            cancelled++;
        }
    }

    private boolean cancel(final java.util.Collection<Pending> queue, final long correlationId,
        final Publication publication)
    {
        for (final Iterator<Pending> it = queue.iterator(); it.hasNext(); )
        {
            final Pending p = it.next();
            if (p.correlationId == correlationId && p.publication == publication)
            {
                it.remove();
                p.release();
                if (p.place != null)
                {
                    writer.sendPlacementEnded(publication, correlationId);
                }
                return true;
            }
        }
        return false;
    }

    private void onHint(final DirectBuffer buffer, final int offset)
    {
        hintDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        final long deadline = System.nanoTime() + Math.clamp(hintDecoder.timeoutNanos(), 0, 600_000_000_000L);
        final List<BlockId> ids = new ArrayList<>();
        for (final PrefetchHintDecoder.BlocksDecoder block : hintDecoder.blocks())
        {
            block.getDigest(digest, 0, BlockId.DIGEST_BYTES);
            if (block.contentLength() > 0)
            {
                ids.add(new BlockId(digest, block.contentLength()));
            }
        }
        final String version = hintDecoder.modelVersion();
        final boolean authorized = !token.required() ||
            token.matches(hintDecoder.tokenLength(), hintDecoder.getToken(token.scratch(), 0, token.scratch().length));
        final Set<BlockId> allowed = authorized ? catalog.blocksOf(version) : null;
        if (allowed == null)
        {
            rejected++;
            return;
        }
        for (final BlockId id : ids)
        {
            if (allowed.contains(id))
            {
                store.prefetch(id, 1, deadline);
                hinted++;
            }
        }
    }

    private Publication publication(final String channel, final int streamId)
    {
        final String key = publicationKey(channel, streamId);
        Publication p = publications.get(key);
        if (p == null || p.isClosed())
        {
            if (publications.size() >= 1024)
            {
                closeUnconnectedPublications();
            }
            try
            {
                p = aeron.addPublication(channel, streamId);
            }
            catch (final RuntimeException ex) // a channel the driver refuses
            {
                return null;
            }
            publications.put(key, p);
        }
        return p;
    }

    /** How {@link #publications} names a client's response channel and stream. */
    private static String publicationKey(final String channel, final int streamId)
    {
        return streamId + "|" + channel;
    }

    private void closeUnconnectedPublications()
    {
        for (final Iterator<Publication> it = publications.values().iterator(); it.hasNext(); )
        {
            final Publication p = it.next();
            if (!p.isConnected() && !inUse(p))
            {
                p.close();
                it.remove();
            }
        }
    }

    private boolean inUse(final Publication publication)
    {
        for (final Pending p : demand)
        {
            if (p.publication == publication)
            {
                return true;
            }
        }
        for (final Pending p : prefetch)
        {
            if (p.publication == publication)
            {
                return true;
            }
        }
        return false;
    }
}
