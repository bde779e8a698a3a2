package dev.strata.transport.bulk;

import io.aeron.logbuffer.FragmentHandler;
import io.aeron.logbuffer.Header;
import org.agrona.DirectBuffer;
import org.agrona.collections.Long2ObjectHashMap;

import java.lang.foreign.MemorySegment;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * Reassembles bulk transfers from a subscription's fragments straight into the caller's memory: each chunk's payload
 * is checked against its CRC32C and copied once from the log buffer into the destination part. Transfers are
 * registered with {@link #expect} before their chunks arrive; chunks of unknown transfers or older attempts are
 * counted and dropped. Polled by one thread.
 */
public final class BulkReceiver implements FragmentHandler
{
    /** One expected transfer and what has arrived of it. */
    public static final class Transfer
    {
        private final long id;
        private final int attempt;
        private final MemorySegment[] parts;
        private final long expectedBytes;
        private long bytes;
        private int chunks;
        private int corruptChunks;
        private String error;

        private Transfer(final long id, final int attempt, final MemorySegment[] parts)
        {
            this.id = id;
            this.attempt = attempt;
            this.parts = parts;
            long total = 0;
            for (final MemorySegment p : parts)
            {
                total += p.byteSize();
            }
            this.expectedBytes = total;
        }

        public long id()
        {
            return id;
        }

        public int attempt()
        {
            return attempt;
        }

        /** Payload bytes arrived (corrupt chunks included). */
        public long bytes()
        {
            return bytes;
        }

        public long expectedBytes()
        {
            return expectedBytes;
        }

        public int chunks()
        {
            return chunks;
        }

        public int corruptChunks()
        {
            return corruptChunks;
        }

        /** Why the transfer cannot complete (a chunk outside its parts), or null. */
        public String error()
        {
            return error;
        }

        /** Every byte arrived. */
        public boolean done()
        {
            return bytes >= expectedBytes || error != null;
        }

        /** Every byte arrived and every chunk matched its checksum. */
        public boolean ok()
        {
            return bytes == expectedBytes && corruptChunks == 0 && error == null;
        }
    }

    private final Long2ObjectHashMap<Transfer> transfers = new Long2ObjectHashMap<>();
    private final Consumer<Transfer> onDone;
    private long droppedChunks;

    /** {@code onDone} is called (on the polling thread) once every byte of a transfer has arrived. */
    public BulkReceiver(final Consumer<Transfer> onDone)
    {
        this.onDone = Objects.requireNonNull(onDone, "onDone");
    }

    /** Registers a transfer: its chunks are written into {@code parts} (native segments), part by part. */
    public Transfer expect(final long transferId, final int attempt, final MemorySegment[] parts)
    {
        final Transfer t = new Transfer(transferId, attempt, parts);
        transfers.put(transferId, t);
        if (t.expectedBytes == 0)
        {
            transfers.remove(transferId);
            onDone.accept(t);
        }
        return t;
    }

    /** Stops expecting a transfer (cancelled, or timed out): its remaining chunks are dropped. */
    public void forget(final long transferId)
    {
        transfers.remove(transferId);
    }

    /** Chunks dropped: unknown transfer, older attempt, or not a bulk frame. */
    public long droppedChunks()
    {
        return droppedChunks;
    }

    @Override
    public void onFragment(final DirectBuffer buffer, final int offset, final int length, final Header header)
    {
        if (length < BulkFrame.HEADER_LENGTH || BulkFrame.magic(buffer, offset) != BulkFrame.MAGIC)
        {
            droppedChunks++;
            return;
        }
        final Transfer t = transfers.get(BulkFrame.transferId(buffer, offset));
        if (t == null || BulkFrame.attempt(buffer, offset) != t.attempt)
        {
            droppedChunks++;
            return;
        }
        final int part = BulkFrame.part(buffer, offset);
        final int at = BulkFrame.offset(buffer, offset);
        final int len = BulkFrame.length(buffer, offset);
        if (part < 0 || part >= t.parts.length || at < 0 || len < 0 || len != length - BulkFrame.HEADER_LENGTH ||
            (long)at + len > t.parts[part].byteSize())
        {
            t.error = "chunk part=" + part + " offset=" + at + " length=" + len + " outside the transfer";
            finish(t);
            return;
        }
        final MemorySegment source = buffer.byteArray() != null ?
            MemorySegment.ofArray(buffer.byteArray()).asSlice(buffer.wrapAdjustment() + offset +
                BulkFrame.HEADER_LENGTH, len) :
            MemorySegment.ofAddress(buffer.addressOffset() + offset + BulkFrame.HEADER_LENGTH).reinterpret(len);
        t.chunks++;
        t.bytes += len;
        if (BulkFrame.crc32c(source) != BulkFrame.crc(buffer, offset))
        {
            t.corruptChunks++;
        }
        else
        {
            MemorySegment.copy(source, 0, t.parts[part], at, len);
        }
        if (t.done())
        {
            finish(t);
        }
    }

    private void finish(final Transfer t)
    {
        transfers.remove(t.id);
        onDone.accept(t);
    }
}
