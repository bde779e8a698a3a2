package dev.strata.transport;

import io.aeron.Aeron;
import io.aeron.Publication;
import io.aeron.Subscription;
import io.aeron.driver.MediaDriver;
import io.aeron.driver.ThreadingMode;
import org.agrona.CloseHelper;

/**
 * The transport facade: an Aeron client, connected to an embedded media driver (the default) or to an external
 * one. {@code launch} either returns a working transport or closes what it opened and rethrows.
 */
public final class Transport implements AutoCloseable
{
    private final TransportContext context;
    private final MediaDriver driver;
    private final Aeron aeron;

    private Transport(final TransportContext context, final MediaDriver driver, final Aeron aeron)
    {
        this.context = context;
        this.driver = driver;
        this.aeron = aeron;
    }

    public static Transport launch(final TransportContext context)
    {
        context.conclude();
        MediaDriver driver = null;
        try
        {
            if (context.embeddedDriver())
            {
                // a client unheard of for the driver timeout is dropped; a publication whose publisher stopped mid
                // message is unblocked after that (Aeron wants the unblock timeout above the liveness timeout)
                final long liveness = java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(context.driverTimeoutMs());
                driver = MediaDriver.launch(new MediaDriver.Context()
                    .aeronDirectoryName(context.aeronDirectory())
                    .clientLivenessTimeoutNs(liveness)
                    .publicationUnblockTimeoutNs(liveness + liveness / 2)
                    .threadingMode(context.threadingMode())
                    .dirDeleteOnStart(true)
                    .dirDeleteOnShutdown(true));
            }
            final Aeron aeron = Aeron.connect(new Aeron.Context()
                .aeronDirectoryName(context.aeronDirectory())
                .driverTimeoutMs(context.driverTimeoutMs()));
            return new Transport(context, driver, aeron);
        }
        catch (final RuntimeException ex)
        {
            CloseHelper.quietClose(driver);
            throw ex;
        }
    }

    public TransportContext context()
    {
        return context;
    }

    /** The Aeron client, for components that build their own publications and subscriptions. */
    public Aeron aeron()
    {
        return aeron;
    }

    public Publication publication(final String channel, final int streamId)
    {
        return aeron.addPublication(channel, streamId);
    }

    public Subscription subscription(final String channel, final int streamId)
    {
        return aeron.addSubscription(channel, streamId);
    }

    @Override
    public void close()
    {
        CloseHelper.closeAll(aeron, driver);
    }
}
