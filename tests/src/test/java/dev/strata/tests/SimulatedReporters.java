package dev.strata.tests;

import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.MessageHeaderEncoder;
import dev.strata.transport.sbe.NodeStatsEncoder;
import io.aeron.Publication;
import org.agrona.concurrent.UnsafeBuffer;

import java.nio.ByteBuffer;

/**
 * Simulated compute nodes for the dashboard's load tests: each sends {@code NodeStats} reports over Aeron IPC to a
 * service's statistics stream, with the node's own timestamps, so that 15 minutes of one-second reports from many
 * nodes can be sent in a few seconds (the service files a report under the second the node took it, within its
 * window). The figures follow a simple deterministic pattern per node.
 */
final class SimulatedReporters implements AutoCloseable
{
    private final Transport transport;
    private final Publication publication;
    private final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(64 * 1024));
    private final MessageHeaderEncoder header = new MessageHeaderEncoder();
    private final NodeStatsEncoder encoder = new NodeStatsEncoder();

    private final String token;

    /** {@code token}: what a real node sends, the service's token when it protects reads, else empty. */
    SimulatedReporters(final String aeronDir, final String ipcChannel, final int streamId, final String token)
    {
        this.token = token;
        transport = Transport.launch(new TransportContext().embeddedDriver(false).aeronDirectory(aeronDir));
        publication = transport.aeron().addPublication(ipcChannel, streamId);
    }

    /**
     * Sends {@code seconds} reports per node for {@code nodes} nodes of {@code layers} layers, the last one taken at
     * {@code endMillis}, interleaved by second as real nodes would.
     *
     * @return reports sent.
     */
    long backfill(final int nodes, final int layers, final int seconds, final long endMillis) throws InterruptedException
    {
        final long deadline = System.nanoTime() + 30_000_000_000L;
        while (!publication.isConnected())
        {
            if (System.nanoTime() > deadline)
            {
                throw new IllegalStateException("the service's statistics stream did not connect");
            }
            Thread.sleep(10);
        }
        long sent = 0;
        for (int s = 0; s < seconds; s++)
        {
            final long at = endMillis - (seconds - 1 - s) * 1000L;
            for (int n = 0; n < nodes; n++)
            {
                encode(n, layers, s, at);
                final int length = MessageHeaderEncoder.ENCODED_LENGTH + encoder.encodedLength();
                long result;
                while ((result = publication.offer(buffer, 0, length)) < 0)
                {
                    if (result == Publication.CLOSED || result == Publication.MAX_POSITION_EXCEEDED)
                    {
                        throw new IllegalStateException("publication " + result);
                    }
                    Thread.onSpinWait();
                }
                sent++;
            }
        }
        return sent;
    }

    private void encode(final int node, final int layers, final int second, final long at)
    {
        final long tokens = (long)second * (10 + node);
        final long accesses = tokens * layers;
        encoder.wrapAndApplyHeader(buffer, 0, header)
            .timestampMillis(at).settingsGeneration(0).responseStreamId(0)
            .accesses(accesses).demandFetches(accesses / 10).prefetchIssued(accesses).cancelled(0)
            .wastedBytes(0).fetchedBytes(accesses * 1_000_000L).stallNanos(tokens * 2_000_000L).tokens(tokens)
            .accuracy(0.9).coverage(0.8 + node / 100.0).timeliness(0.7).lookahead(1 + node % 4)
            .budgetBytes(1L << 30).usedBytes(900L << 20).unusableBytes((second % 20) << 20)
            .fetchCount(layers).fetchP50Nanos(5_000_000L + node * 100_000L).fetchP99Nanos(20_000_000L + second * 10_000L)
            .reportCpuNanos(second * 50_000L).layers(layers).experts(0).sampledTokens(0);
        final NodeStatsEncoder.UnitsEncoder units = encoder.unitsCount(layers);
        for (int l = 0; l < layers; l++)
        {
            units.next().unit(l).accessCount(10 + node + (l * 7 + second) % 13);
        }
        encoder.node("sim-" + node).modelVersion("sim@1").responseChannel("").token(token);
    }

    @Override
    public void close()
    {
        publication.close();
        transport.close();
    }
}
