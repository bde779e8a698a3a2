package dev.strata.compute.stream;

import dev.strata.paramclient.BlockClient;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;

import dev.strata.transport.BlockId;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A node's Aeron connection to the parameter service's block server, found through the admin API and
 * re-established after the service restarts (its endpoints change). Over UDP the node runs its own media driver,
 * which survives the service; over IPC it joins the service's driver on the same host (faster, but gone when
 * the service dies). Used by one thread: the {@link Fetcher}.
 */
public final class BlockChannel implements Fetcher.Blocks
{
    /** How a node reaches the block server. */
    /**
     * Over IPC, whether unit buffers are shared regions the service copies blocks straight into (direct placement,
     * one copy instead of two); {@code -Dstrata.block.placement=false} sends every block as chunks.
     */
    static final boolean PLACEMENT = Boolean.parseBoolean(System.getProperty("strata.block.placement", "true"));

    public enum Mode
    {
        UDP, IPC
    }

    private static final long CONNECT_TIMEOUT = TimeUnit.SECONDS.toNanos(5);

    private final ParamClient admin;
    private final Mode mode;
    private final String localHost;
    private final boolean verifyDigests;
    /** A transport shared with other roles of the process (used, never closed), or null. */
    private final Transport shared;
    private Transport transport;
    private BlockClient client;

    BlockChannel(final ParamClient admin, final Mode mode, final String localHost, final boolean verifyDigests,
        final Transport shared)
    {
        this.admin = admin;
        this.mode = mode;
        this.localHost = localHost;
        this.verifyDigests = verifyDigests;
        this.shared = shared;
    }

    /** The connected client, connecting first when needed. */
    BlockClient client() throws IOException
    {
        if (client == null)
        {
            final ServiceInfo.Endpoints e = admin.endpoints();
            if (shared != null)
            {
                transport = shared;
            }
            else if (mode == Mode.IPC)
            {
                closeTransport();
                transport = Transport.launch(new TransportContext().embeddedDriver(false)
                    .aeronDirectory(e.aeronDir()));
            }
            else if (transport == null)
            {
                transport = Transport.launch(new TransportContext());
            }
            final String channel = mode == Mode.IPC ? e.ipcChannel() : e.udpChannel();
            client = BlockClient.connect(transport.aeron(), channel, e.streamId(), localHost,
                CONNECT_TIMEOUT).verifyDigests(verifyDigests).token(admin.token())
                .directPlacement(mode == Mode.IPC && PLACEMENT);
        }
        return client;
    }

    /** The connected client, or null: never connects. */
    BlockClient current()
    {
        return client;
    }

    @Override
    public long submitInto(final String version, final List<BlockId> ids, final MemorySegment dest,
        final long[] offsets, final long timeoutNanos, final int priority, final long neededInNanos) throws IOException
    {
        return client().submitInto(version, ids, dest, offsets, timeoutNanos, priority, neededInNanos);
    }

    @Override
    public boolean hint(final String version, final List<BlockId> ids, final long timeoutNanos) throws IOException
    {
        return client().hint(version, ids, timeoutNanos);
    }

    @Override
    public int poll() throws IOException
    {
        return client().poll();
    }

    @Override
    public boolean isDone(final long correlationId)
    {
        return client != null && client.isDone(correlationId);
    }

    @Override
    public void await(final long correlationId) throws IOException
    {
        client().await(correlationId);
    }

    /** Forgets a request (chunks still arriving for it are dropped); never connects. */
    @Override
    public void cancel(final long correlationId)
    {
        if (client != null)
        {
            client.cancel(correlationId);
        }
    }

    /** Drops the connection; the next {@link #client()} finds the endpoints again. */
    @Override
    public void reset()
    {
        if (client != null)
        {
            try
            {
                client.close();
            }
            catch (final RuntimeException ignored)
            {
                // the driver may be gone with the service
            }
            client = null;
        }
        if (mode == Mode.IPC)
        {
            closeTransport();
        }
    }

    private void closeTransport()
    {
        if (transport == shared)
        {
            transport = null; // not ours to close
        }
        if (transport != null)
        {
            try
            {
                transport.close();
            }
            catch (final RuntimeException ignored)
            {
                // already dead
            }
            transport = null;
        }
    }

    @Override
    public void close()
    {
        reset();
        closeTransport();
    }
}
