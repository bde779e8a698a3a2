package dev.strata.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * What a split deployment serves under its name: the stable version's node set and, while the parameter service
 * runs a canary of the followed model, the canary's set for its share of requests. A request for the name goes to
 * the canary when the hash of its {@code user} falls in the canary's percent (sticky per user; random without
 * one), otherwise to the stable version; {@code NAME@V} (as model or {@code X-Strata-Version}) picks the canary by
 * its number. The canary's requests are counted while they run, so it is stopped only after the last one.
 */
public final class ClusterCatalog implements ModelCatalog
{
    /** A canary in rotation: its model (id {@code NAME@V}), its number and share, and its requests running. */
    public record Canary(ServedModel model, int number, int weightPercent, AtomicInteger inFlight)
    {
    }

    private final ServedModel stable;
    private final List<String> aliases;
    private volatile Canary canary;

    public ClusterCatalog(final ServedModel stable, final List<String> aliases)
    {
        this.stable = stable;
        this.aliases = List.copyOf(aliases);
    }

    /** Sends {@code weightPercent}% of new requests (1..99) to {@code model}, version {@code number}. */
    public void canary(final ServedModel model, final int number, final int weightPercent)
    {
        if (weightPercent < 1 || weightPercent > 99)
        {
            throw new IllegalArgumentException("canary weight must be 1..99 percent, not " + weightPercent);
        }
        final Canary c = canary;
        canary = new Canary(model, number, weightPercent, c != null && c.number == number ? c.inFlight :
            new AtomicInteger());
    }

    /** No new request goes to the canary; returns it (null when there was none) to wait on its requests running. */
    public Canary endCanary()
    {
        final Canary c = canary;
        canary = null;
        return c;
    }

    /** The canary in rotation, or null. */
    public Canary canary()
    {
        return canary;
    }

    @Override
    public List<ServedModel> models()
    {
        final Canary c = canary;
        final List<ServedModel> models = new ArrayList<>(List.of(stable));
        if (c != null)
        {
            models.add(c.model);
        }
        return models;
    }

    @Override
    public Lease acquire(final String name, final String pinnedVersion, final String user)
    {
        final Canary c = canary;
        final boolean canaryByName = c != null && name.equals(c.model.id());
        if (!canaryByName && !name.equals(stable.id()) && !aliases.contains(name))
        {
            throw new ApiError(404, "invalid_request_error", "model", "model_not_found",
                "The model '" + name + "' does not exist (served: " + served(c) + ")");
        }
        final boolean toCanary;
        if (pinnedVersion != null)
        {
            toCanary = c != null && (pinnedVersion.equals(c.model.id()) || pinnedVersion.equals(
                Integer.toString(c.number)));
            if (!toCanary && !pinnedVersion.equals(stable.id()))
            {
                throw new ApiError(404, "invalid_request_error", "model", "model_not_found",
                    "version '" + pinnedVersion + "' is not served (served: " + served(c) + ")");
            }
        }
        else
        {
            toCanary = canaryByName || c != null && ParamCatalog.bucket(user) < c.weightPercent;
        }
        if (!toCanary)
        {
            return lease(stable, null);
        }
        // counted first, then checked: either the canary's end sees this request running, or this request sees the
        // end and takes the stable version
        c.inFlight.incrementAndGet();
        final Canary now = canary;
        if (now == null || now.inFlight != c.inFlight)
        {
            c.inFlight.decrementAndGet();
            if (pinnedVersion != null || canaryByName)
            {
                throw new ApiError(404, "invalid_request_error", "model", "model_not_found",
                    "version '" + c.model.id() + "' is no longer served (served: " + served(now) + ")");
            }
            return lease(stable, null);
        }
        return lease(c.model, c.inFlight);
    }

    private String served(final Canary c)
    {
        return c == null ? stable.id() : stable.id() + ", " + c.model.id() + " (canary, " + c.weightPercent + "%)";
    }

    private static Lease lease(final ServedModel model, final AtomicInteger inFlight)
    {
        return new Lease()
        {
            private boolean closed;

            @Override
            public ServedModel model()
            {
                return model;
            }

            @Override
            public void close()
            {
                if (!closed && inFlight != null)
                {
                    inFlight.decrementAndGet();
                }
                closed = true;
            }
        };
    }
}
