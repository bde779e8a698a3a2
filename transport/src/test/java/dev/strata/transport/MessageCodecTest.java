package dev.strata.transport;

import dev.strata.transport.sbe.BlockChunkDecoder;
import dev.strata.transport.sbe.BlockChunkEncoder;
import dev.strata.transport.sbe.BlockRequestDecoder;
import dev.strata.transport.sbe.BlockRequestEncoder;
import dev.strata.transport.sbe.MessageHeaderDecoder;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.Status;
import io.aeron.FragmentAssembler;
import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The build-time generated SBE codecs round-trip the protocol's messages, in a buffer and over Aeron IPC. */
class MessageCodecTest
{
    @Test
    void shouldRoundTripBlockRequestAndChunkOverIpc()
    {
        final Random random = new Random(7);
        final byte[][] digests = new byte[3][32];
        for (final byte[] d : digests)
        {
            random.nextBytes(d);
        }
        final byte[] payload = new byte[40_000];
        random.nextBytes(payload);
        final CRC32C crc = new CRC32C();
        crc.update(payload);

        final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
        final MessageHeaderEncoder header = new MessageHeaderEncoder();
        final BlockRequestEncoder request = new BlockRequestEncoder();
        request.wrapAndApplyHeader(buffer, 0, header).correlationId(42).timeoutNanos(123_456_789L).priority((short)0);
        final BlockRequestEncoder.BlocksEncoder blocks = request.blocksCount(digests.length);
        for (int i = 0; i < digests.length; i++)
        {
            blocks.next().putDigest(digests[i], 0, 32).contentLength(1_000_000L + i);
        }
        request.modelVersion("llama@3");
        request.responseChannel("aeron:ipc");
        final int requestLength = MessageHeaderEncoder.ENCODED_LENGTH + request.encodedLength();

        final UnsafeBuffer chunkBuffer = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
        final BlockChunkEncoder chunk = new BlockChunkEncoder();
        chunk.wrapAndApplyHeader(chunkBuffer, 0, header).correlationId(42).status(Status.OK).blockIndex(1)
            .chunkOffset(0).totalLength(payload.length).crc32c(crc.getValue()).putPayload(payload, 0, payload.length);
        final int chunkLength = MessageHeaderEncoder.ENCODED_LENGTH + chunk.encodedLength();

        final List<Object> received = new ArrayList<>();
        try (Transport t = Transport.launch(new TransportContext());
            Subscription sub = t.subscription(TransportContext.IPC_CHANNEL, 20);
            Publication pub = t.publication(TransportContext.IPC_CHANNEL, 20))
        {
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (!pub.isConnected())
            {
                assertTrue(System.nanoTime() < deadline, "not connected");
                Thread.onSpinWait();
            }
            while (pub.offer(buffer, 0, requestLength) < 0)
            {
                Thread.onSpinWait();
            }
            while (pub.offer(chunkBuffer, 0, chunkLength) < 0)
            {
                Thread.onSpinWait();
            }
            final MessageHeaderDecoder headerDecoder = new MessageHeaderDecoder();
            final BlockRequestDecoder requestDecoder = new BlockRequestDecoder();
            final BlockChunkDecoder chunkDecoder = new BlockChunkDecoder();
            // messages larger than the MTU arrive as fragments: the assembler hands over whole messages
            final FragmentAssembler assembler = new FragmentAssembler((b, offset, length, h) ->
            {
                headerDecoder.wrap(b, offset);
                assertEquals(BlockRequestDecoder.SCHEMA_ID, headerDecoder.schemaId());
                assertEquals(BlockRequestDecoder.SCHEMA_VERSION, headerDecoder.version());
                switch (headerDecoder.templateId())
                {
                    case BlockRequestDecoder.TEMPLATE_ID ->
                    {
                        requestDecoder.wrapAndApplyHeader(b, offset, headerDecoder);
                        final List<String> got = new ArrayList<>();
                        final long correlation = requestDecoder.correlationId();
                        for (final BlockRequestDecoder.BlocksDecoder g : requestDecoder.blocks())
                        {
                            final byte[] d = new byte[32];
                            g.getDigest(d, 0, 32);
                            got.add(Arrays.toString(d) + "/" + g.contentLength());
                        }
                        received.add(correlation + " " + got + " " + requestDecoder.modelVersion());
                    }
                    case BlockChunkDecoder.TEMPLATE_ID ->
                    {
                        chunkDecoder.wrapAndApplyHeader(b, offset, headerDecoder);
                        assertEquals(Status.OK, chunkDecoder.status());
                        final long expectedCrc = chunkDecoder.crc32c();
                        final byte[] bytes = new byte[chunkDecoder.payloadLength()];
                        chunkDecoder.getPayload(bytes, 0, bytes.length);
                        final CRC32C check = new CRC32C();
                        check.update(bytes);
                        assertEquals(expectedCrc, check.getValue(), "chunk checksum");
                        received.add(bytes);
                    }
                    default -> throw new AssertionError("unknown template " + headerDecoder.templateId());
                }
            });
            while (received.size() < 2)
            {
                assertTrue(System.nanoTime() < deadline, "messages did not arrive");
                sub.poll(assembler, 10);
            }
        }
        final List<String> expectedBlocks = new ArrayList<>();
        for (int i = 0; i < digests.length; i++)
        {
            expectedBlocks.add(Arrays.toString(digests[i]) + "/" + (1_000_000L + i));
        }
        assertEquals("42 " + expectedBlocks + " llama@3", received.get(0));
        assertArrayEquals(payload, (byte[])received.get(1));
    }
}
