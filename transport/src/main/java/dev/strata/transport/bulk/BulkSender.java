package dev.strata.transport.bulk;

import io.aeron.Publication;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BooleanSupplier;
import java.util.function.IntPredicate;

/**
 * Sends off-heap segments as one bulk transfer over a publication, in chunks of {@link BulkFrame}: each chunk is
 * offered as the header and a view of the caller's memory (no copy on this side but Aeron's into its log), with a
 * CRC32C of its bytes. Back-pressure waits on the idle strategy; the deadline and the cancel flag end the wait.
 * One sender per thread.
 */
public final class BulkSender
{
    /** What a transfer sent. */
    public record Sent(long bytes, int chunks)
    {
    }

    /**
     * The wait for a sender that shares a core with compute (a prefill node's KV sends beside its engine thread):
     * under back-pressure it spins and yields briefly, then parks from 10 us doubling to 1 ms, so the compute keeps
     * the core while the receiver catches up. A yielding wait stays runnable, so beside one engine thread it takes
     * up to half of the core for as long as the receiver lags (alone on a core, all of it: BulkTransferTest).
     */
    public static IdleStrategy sharedCoreIdle()
    {
        return new BackoffIdleStrategy(10, 10, TimeUnit.MICROSECONDS.toNanos(10), TimeUnit.MILLISECONDS.toNanos(1));
    }

    private final Publication publication;
    private final IdleStrategy idle;
    private final int chunkBytes;
    private final BulkChunkWriter writer = new BulkChunkWriter();
    private IntPredicate corruptChunk = c -> false;

    public BulkSender(final Publication publication, final IdleStrategy idle)
    {
        this.publication = Objects.requireNonNull(publication, "publication");
        this.idle = Objects.requireNonNull(idle, "idle");
        this.chunkBytes = BulkChunkWriter.chunkBytes(publication);
    }

    /** Payload bytes per chunk: the publication's largest unfragmented message less the header. */
    public int chunkBytes()
    {
        return chunkBytes;
    }

    /**
     * Fault injection for tests: chunks (counted from 0 over this sender's life) for which the predicate holds are
     * sent with one byte flipped after their checksum was taken, as a damaged link would deliver them.
     */
    public BulkSender corruptChunks(final IntPredicate which)
    {
        this.corruptChunk = which;
        return this;
    }

    private int chunkCount;

    /**
     * Sends {@code parts} (native segments) as transfer {@code transferId}, attempt {@code attempt}.
     *
     * @throws TimeoutException       when back-pressure outlasts the deadline.
     * @throws IllegalStateException  when the publication is closed or has no subscriber, or the transfer is
     *                                cancelled.
     */
    public Sent send(final long transferId, final int attempt, final MemorySegment[] parts, final long deadlineNanos,
        final BooleanSupplier cancelled) throws TimeoutException
    {
        long bytes = 0;
        int chunks = 0;
        for (int p = 0; p < parts.length; p++)
        {
            final Sent sent = sendPart(transferId, attempt, p, parts[p], deadlineNanos, cancelled);
            bytes += sent.bytes();
            chunks += sent.chunks();
        }
        return new Sent(bytes, chunks);
    }

    /**
     * Sends one part of transfer {@code transferId}: for a transfer whose parts become ready at different times
     * (a prefill's layers). The receiver takes parts in any order.
     *
     * @throws TimeoutException       when back-pressure outlasts the deadline.
     * @throws IllegalStateException  when the publication is closed or has no subscriber, or the transfer is
     *                                cancelled.
     */
    public Sent sendPart(final long transferId, final int attempt, final int index, final MemorySegment part,
        final long deadlineNanos, final BooleanSupplier cancelled) throws TimeoutException
    {
        if (!part.isNative())
        {
            throw new IllegalArgumentException("part " + index + " is not off-heap");
        }
        long bytes = 0;
        int chunks = 0;
        for (long off = 0; off < part.byteSize(); off += chunkBytes)
        {
            final int len = (int)Math.min(chunkBytes, part.byteSize() - off);
            final MemorySegment chunk = part.asSlice(off, len);
            if (corruptChunk.test(chunkCount++))
            {
                offerCorrupted(transferId, attempt, index, (int)off, chunk, deadlineNanos, cancelled);
            }
            else
            {
                offer(transferId, attempt, index, (int)off, chunk, BulkChunkWriter.COMPUTE_CRC, deadlineNanos,
                    cancelled);
            }
            bytes += len;
            chunks++;
        }
        return new Sent(bytes, chunks);
    }

    private void offerCorrupted(final long transferId, final int attempt, final int part, final int offset,
        final MemorySegment chunk, final long deadlineNanos, final BooleanSupplier cancelled) throws TimeoutException
    {
        try (Arena arena = Arena.ofConfined())
        {
            final MemorySegment copy = arena.allocate(chunk.byteSize());
            copy.copyFrom(chunk);
            final long at = chunk.byteSize() / 2;
            copy.set(java.lang.foreign.ValueLayout.JAVA_BYTE, at,
                (byte)(copy.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at) ^ 0x10));
            offer(transferId, attempt, part, offset, copy, BulkFrame.crc32c(chunk) & 0xFFFF_FFFFL, deadlineNanos,
                cancelled);
        }
    }

    private void offer(final long transferId, final int attempt, final int part, final int offset,
        final MemorySegment chunk, final long crc, final long deadlineNanos, final BooleanSupplier cancelled)
        throws TimeoutException
    {
        idle.reset();
        while (true)
        {
            final long result = writer.tryOffer(publication, transferId, attempt, part, offset, chunk, crc);
            if (result > 0)
            {
                return;
            }
            if (result == Publication.CLOSED || result == Publication.MAX_POSITION_EXCEEDED)
            {
                throw new IllegalStateException("publication " + publication.channel() + " stream " +
                    publication.streamId() + " is closed");
            }
            if (result == Publication.NOT_CONNECTED && !publication.isConnected() &&
                System.nanoTime() - deadlineNanos > 0)
            {
                throw new IllegalStateException("no receiver on " + publication.channel() + " stream " +
                    publication.streamId());
            }
            if (cancelled.getAsBoolean())
            {
                throw new IllegalStateException("transfer cancelled");
            }
            if (System.nanoTime() - deadlineNanos > 0)
            {
                throw new TimeoutException("back-pressure outlasted the deadline on " + publication.channel() +
                    " stream " + publication.streamId());
            }
            idle.idle();
        }
    }
}
