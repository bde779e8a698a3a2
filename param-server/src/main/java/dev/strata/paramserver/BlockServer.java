package dev.strata.paramserver;

import dev.strata.tiering.BlockId;
import dev.strata.tiering.BlockStoreException;
import dev.strata.tiering.TieredBlockStore;
import dev.strata.transport.sbe.BlockChunkEncoder;
import dev.strata.transport.sbe.BlockRequestDecoder;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.Status;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.UnsafeBuffer;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * Serves blocks over Aeron: reads {@code BlockRequest}s from a subscription and answers each block with one or
 * more {@code BlockChunk}s (each at most {@link #CHUNK_BYTES} of payload, with its CRC32C) carrying the
 * request's correlation id. A block that cannot be served gets a single chunk with an error status, and the
 * server goes on with the next. An {@link Agent}: run it on its own thread with an {@code AgentRunner}, or call
 * {@link #doWork()} from a host loop.
 * <p>
 * Not built yet: checking that requested blocks belong to the pinned model version (needs the registry), and
 * demand-before-prefetch ordering across requests.
 */
public final class BlockServer implements Agent
{
    /** Payload bytes per chunk: well under Aeron's largest message on IPC and UDP defaults. */
    public static final int CHUNK_BYTES = 256 * 1024;
    private static final long OFFER_TIMEOUT_NS = 5_000_000_000L;

    private final TieredBlockStore store;
    private final Subscription requests;
    private final Publication responses;
    private final FragmentAssembler assembler = new FragmentAssembler(this::onFragment);
    private final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
    private final BlockRequestDecoder requestDecoder = new BlockRequestDecoder();
    private final MessageHeaderEncoder headerEncoder = new MessageHeaderEncoder();
    private final BlockChunkEncoder chunkEncoder = new BlockChunkEncoder();
    private final UnsafeBuffer out = new UnsafeBuffer(ByteBuffer.allocateDirect(CHUNK_BYTES + 256));
    private final byte[] copy = new byte[CHUNK_BYTES];
    private final byte[] digest = new byte[BlockId.DIGEST_BYTES];
    private final CRC32C crc = new CRC32C();
    private long served;
    private long rejected;

    public BlockServer(final TieredBlockStore store, final Subscription requests, final Publication responses)
    {
        this.store = store;
        this.requests = requests;
        this.responses = responses;
    }

    @Override
    public int doWork()
    {
        return requests.poll(assembler, 16);
    }

    @Override
    public String roleName()
    {
        return "strata-block-server";
    }

    public long served()
    {
        return served;
    }

    public long rejected()
    {
        return rejected;
    }

    private void onFragment(final DirectBuffer buffer, final int offset, final int length,
        final io.aeron.logbuffer.Header header)
    {
        headerDecoder.wrap(buffer, offset);
        if (headerDecoder.schemaId() != BlockRequestDecoder.SCHEMA_ID ||
            headerDecoder.templateId() != BlockRequestDecoder.TEMPLATE_ID)
        {
            rejected++; // not a request of ours: ignore rather than fail the server
            return;
        }
        requestDecoder.wrapAndApplyHeader(buffer, offset, headerDecoder);
        final long correlationId = requestDecoder.correlationId();
        int index = 0;
        for (final BlockRequestDecoder.BlocksDecoder block : requestDecoder.blocks())
        {
            block.getDigest(digest, 0, BlockId.DIGEST_BYTES);
            final long contentLength = block.contentLength();
            final int blockIndex = index++;
            if (contentLength <= 0)
            {
                sendStatus(correlationId, blockIndex, Status.UNKNOWN_BLOCK);
                continue;
            }
            final BlockId id = new BlockId(digest, contentLength);
            try (TieredBlockStore.Pinned pinned = store.acquire(id))
            {
                sendBlock(correlationId, blockIndex, pinned.bytes());
                served++;
            }
            catch (final BlockStoreException ex)
            {
                sendStatus(correlationId, blockIndex, switch (ex.reason())
                {
                    case UNKNOWN -> Status.UNKNOWN_BLOCK;
                    case CORRUPT -> Status.CORRUPT;
                    case UNAVAILABLE -> Status.UNAVAILABLE;
                });
            }
            catch (final IOException ex)
            {
                sendStatus(correlationId, blockIndex, Status.UNAVAILABLE);
            }
        }
    }

    private void sendBlock(final long correlationId, final int blockIndex, final MemorySegment bytes)
    {
        final long total = bytes.byteSize();
        for (long off = 0; off < total; off += CHUNK_BYTES)
        {
            final int n = (int)Math.min(CHUNK_BYTES, total - off);
            MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, off, copy, 0, n);
            crc.reset();
            crc.update(copy, 0, n);
            chunkEncoder.wrapAndApplyHeader(out, 0, headerEncoder)
                .correlationId(correlationId).status(Status.OK).blockIndex(blockIndex)
                .chunkOffset(off).totalLength(total).crc32c(crc.getValue())
                .putPayload(copy, 0, n);
            offer(MessageHeaderEncoder.ENCODED_LENGTH + chunkEncoder.encodedLength());
        }
    }

    private void sendStatus(final long correlationId, final int blockIndex, final Status status)
    {
        chunkEncoder.wrapAndApplyHeader(out, 0, headerEncoder)
            .correlationId(correlationId).status(status).blockIndex(blockIndex)
            .chunkOffset(0).totalLength(0).crc32c(0).putPayload(copy, 0, 0);
        offer(MessageHeaderEncoder.ENCODED_LENGTH + chunkEncoder.encodedLength());
    }

    /** Offers with back-pressure handling: retries while back-pressured, gives up after a bounded time. */
    private void offer(final int length)
    {
        final long deadline = System.nanoTime() + OFFER_TIMEOUT_NS;
        long result;
        while ((result = responses.offer(out, 0, length)) < 0)
        {
            if (result == Publication.CLOSED || result == Publication.MAX_POSITION_EXCEEDED ||
                System.nanoTime() > deadline)
            {
                rejected++;
                return; // the client times out and retries; the server stays up
            }
            Thread.onSpinWait();
        }
    }
}
