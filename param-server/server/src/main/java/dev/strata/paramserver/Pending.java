package dev.strata.paramserver;

import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.BlockId;
import dev.strata.transport.sbe.Status;
import io.aeron.Publication;

import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A block request held by the {@link BlockServer}: which blocks, where the answer goes, when it expires and when
 * its client needs it, and how far it has been sent (block, offset, the pinned block or its read in progress).
 * Used by the server's agent thread only.
 */
final class Pending
{
    final long correlationId;
    final long expiresAtNanos;
    final long receivedAtNanos;
    final long neededByNanos;
    final long sequence;
    /** In the demand queue: a demand fetch, or an answer that costs nothing to send (BUSY). */
    boolean urgent;
    final Publication publication;
    final List<BlockId> ids;
    final Status[] status; // per block: null to serve, else the error to send
    int block;
    long offset;
    TieredBlockStore.Pinned pinned;
    /** The CRC32C of each chunk of the current block, once it is pinned. */
    int[] crcs;
    /** Direct placement: the client's shared region, and where in it each block goes; null for chunks. */
    dev.strata.transport.bulk.SharedRegion place;
    long[] placeAt;
    /** Direct placement: the current chunk is copied, its notice not yet sent (the client was back-pressured). */
    boolean placedUnannounced;
    /** A cold read of the current block, running off the agent thread. */
    CompletableFuture<TieredBlockStore.Pinned> loading;

    Pending(final long correlationId, final long receivedAtNanos, final long expiresAtNanos,
        final long neededByNanos, final long sequence, final Publication publication, final List<BlockId> ids,
        final Status[] status)
    {
        this.correlationId = correlationId;
        this.receivedAtNanos = receivedAtNanos;
        this.expiresAtNanos = expiresAtNanos;
        this.neededByNanos = neededByNanos;
        this.sequence = sequence;
        this.publication = publication;
        this.ids = ids;
        this.status = status;
    }

    /** Every block was sent (or placed) whole: none failed, and the request was not dropped part way. */
    boolean servedWhole()
    {
        if (block < ids.size())
        {
            return false;
        }
        for (final var s : status)
        {
            if (s != null)
            {
                return false;
            }
        }
        return true;
    }

    void release()
    {
        if (pinned != null)
        {
            pinned.close();
            pinned = null;
        }
        if (loading != null)
        {
            // the read finishes on its own thread: its pin is released when it does
            loading.thenAccept(TieredBlockStore.Pinned::close);
            loading = null;
        }
    }
}
