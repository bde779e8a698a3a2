package dev.strata.transport;

import io.aeron.Publication;
import io.aeron.Subscription;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

import java.net.DatagramSocket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A real embedded media driver carries messages, in order and intact, over IPC and UDP loopback. */
class TransportTest
{
    @Test
    void shouldDeliverMessagesInOrderOverIpc()
    {
        try (Transport t = Transport.launch(new TransportContext()))
        {
            roundTrip(t, TransportContext.IPC_CHANNEL);
        }
    }

    @Test
    void shouldDeliverMessagesInOrderOverUdpLoopback() throws Exception
    {
        final int port;
        try (DatagramSocket probe = new DatagramSocket(0))
        {
            port = probe.getLocalPort();
        }
        try (Transport t = Transport.launch(new TransportContext()))
        {
            roundTrip(t, TransportContext.udpChannel("localhost", port));
        }
    }

    @Test
    void shouldPutDriverUnderDevShmAndRemoveItOnClose()
    {
        final String dir;
        try (Transport t = Transport.launch(new TransportContext()))
        {
            dir = t.context().aeronDirectory();
            assertTrue(Files.isDirectory(Path.of(dir)));
            if (Files.isDirectory(Path.of("/dev/shm")))
            {
                assertTrue(dir.startsWith("/dev/shm/"), dir);
            }
        }
        assertFalse(Files.exists(Path.of(dir)), "driver directory deleted on close");
    }

    @Test
    void shouldRejectExternalDriverWithoutDirectoryAndBadSettings()
    {
        assertThrows(IllegalArgumentException.class,
            () -> new TransportContext().embeddedDriver(false).aeronDirectory(null).conclude());
        assertThrows(IllegalArgumentException.class, () -> new TransportContext().driverTimeoutMs(0).conclude());
        assertThrows(IllegalArgumentException.class, () -> TransportContext.udpChannel("localhost", 70_000));
    }

    private static void roundTrip(final Transport t, final String channel)
    {
        final int count = 2_000;
        try (Subscription sub = t.subscription(channel, 10);
            Publication pub = t.publication(channel, 10))
        {
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (!pub.isConnected())
            {
                assertTrue(System.nanoTime() < deadline, "publication did not connect");
                Thread.onSpinWait();
            }
            final List<Long> received = new ArrayList<>();
            final UnsafeBuffer buffer = new UnsafeBuffer(ByteBuffer.allocateDirect(64));
            int sent = 0;
            while (received.size() < count)
            {
                assertTrue(System.nanoTime() < deadline, "only " + received.size() + " of " + count + " arrived");
                if (sent < count)
                {
                    buffer.putLong(0, sent);
                    buffer.putLong(8, ~(long)sent);
                    if (pub.offer(buffer, 0, 16) > 0)
                    {
                        sent++;
                    }
                }
                sub.poll((b, offset, length, header) ->
                {
                    assertEquals(16, length);
                    assertEquals(~b.getLong(offset), b.getLong(offset + 8), "payload intact");
                    received.add(b.getLong(offset));
                }, 64);
            }
            for (int i = 0; i < count; i++)
            {
                assertEquals(i, received.get(i), "in order");
            }
        }
    }
}
