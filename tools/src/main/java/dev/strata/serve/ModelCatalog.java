package dev.strata.serve;

import java.util.List;

/**
 * The models an API server serves, and how a request's {@code model} field resolves to one version at
 * admission.
 */
public interface ModelCatalog
{
    /** What a request holds while it runs: the version it resolved to; closing it lets the version go. */
    interface Lease extends AutoCloseable
    {
        ServedModel model();

        @Override
        void close();
    }

    /** Every model version served now. */
    List<ServedModel> models();

    /**
     * Resolves a request's model (and optional pin header and user) to one version and holds it until the lease is
     * closed.
     *
     * @throws ApiError 404 when nothing of that name is served.
     */
    Lease acquire(String model, String pinnedVersion, String user);
}
