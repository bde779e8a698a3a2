package dev.strata.serve;

import java.util.List;

/** One model version, answering to its id and to the short names given. */
public final class SingleModelCatalog implements ModelCatalog
{
    private final ServedModel model;
    private final List<String> aliases;

    public SingleModelCatalog(final ServedModel model, final List<String> aliases)
    {
        this.model = model;
        this.aliases = List.copyOf(aliases);
    }

    @Override
    public List<ServedModel> models()
    {
        return List.of(model);
    }

    @Override
    public Lease acquire(final String name, final String pinnedVersion, final String user)
    {
        if (!name.equals(model.id()) && !aliases.contains(name))
        {
            throw new ApiError(404, "invalid_request_error", "model", "model_not_found",
                "The model '" + name + "' does not exist (served: " + model.id() + ")");
        }
        if (pinnedVersion != null && !pinnedVersion.equals(model.id()))
        {
            throw new ApiError(404, "invalid_request_error", "model", "model_not_found",
                "version '" + pinnedVersion + "' is not served (served: " + model.id() + ")");
        }
        return new Lease()
        {
            @Override
            public ServedModel model()
            {
                return model;
            }

            @Override
            public void close()
            {
            }
        };
    }
}
