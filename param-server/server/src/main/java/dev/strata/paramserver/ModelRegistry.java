package dev.strata.paramserver;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * The model registry as a deterministic state machine: {@link #apply} takes a {@link RegistryCommand} and
 * either changes the state or throws {@link RegistryException} leaving it untouched. The same commands in the
 * same order always give the same state, so the registry can be persisted as a command log (see
 * {@link RegistryLog}) and replicated on Aeron Cluster without rewriting.
 * <p>
 * Labels: {@code stable} names the active version, {@code canary} the canary. Leases: a version with a lease
 * that has not expired (by the command's own clock) cannot be deleted.
 */
public final class ModelRegistry
{
    /** Model names: letters, digits, {@code . _ -}, 1..64 characters, not starting with a dot (no traversal). */
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}");

    /** One version's record. */
    public record Version(String model, int number, VersionState state, String manifestDigest, int canaryWeight)
    {
        Version with(final VersionState s)
        {
            return new Version(model, number, s, manifestDigest, canaryWeight);
        }
    }

    private record LeaseKey(String node, String model, int version)
    {
    }

    private final Map<String, TreeMap<Integer, Version>> models = new TreeMap<>();
    private final Map<LeaseKey, Long> leases = new HashMap<>();
    private long clockMillis;

    /** Validates a model name (no path separators or traversal, bounded length). */
    public static String checkName(final String model)
    {
        if (model == null || !NAME.matcher(model).matches())
        {
            throw new RegistryException(RegistryException.Kind.INVALID, "invalid model name '" + model +
                "' (1-64 of letters, digits, '.', '_', '-'; not starting with '.')");
        }
        return model;
    }

    /** Applies a command; returns the affected version (or null for lease commands). */
    public Version apply(final RegistryCommand command)
    {
        return switch (command)
        {
            case RegistryCommand.CreateVersion c ->
            {
                checkDigest(c.manifestDigest());
                final TreeMap<Integer, Version> versions = models.computeIfAbsent(checkName(c.model()),
                    k -> new TreeMap<>());
                final int number = versions.isEmpty() ? 1 : versions.lastKey() + 1;
                final Version v = new Version(c.model(), number, VersionState.UPLOADING, c.manifestDigest(), 0);
                versions.put(number, v);
                yield v;
            }
            case RegistryCommand.Commit c ->
            {
                final Version v = require(c.model(), c.version(), VersionState.UPLOADING);
                if (!checkDigest(c.manifestDigest()).equals(v.manifestDigest()))
                {
                    throw new RegistryException(RegistryException.Kind.CONFLICT, "commit of " + c.model() + "@" + c.version() +
                        " names manifest " + c.manifestDigest() + " but the version was created for " +
                        v.manifestDigest());
                }
                yield put(new Version(v.model(), v.number(), VersionState.COMMITTED, c.manifestDigest(), 0));
            }
            case RegistryCommand.Promote c ->
            {
                final Version v = require(c.model(), c.version(), VersionState.COMMITTED, VersionState.CANARY,
                    VersionState.RETIRED, VersionState.ACTIVE);
                if (v.state() == VersionState.ACTIVE)
                {
                    yield v; // already the active version: nothing changes
                }
                final Version active = find(c.model(), VersionState.ACTIVE);
                if (active != null)
                {
                    put(active.with(VersionState.RETIRED));
                }
                yield put(new Version(v.model(), v.number(), VersionState.ACTIVE, v.manifestDigest(), 0));
            }
            case RegistryCommand.Canary c ->
            {
                if (c.weightPercent() < 1 || c.weightPercent() > 99)
                {
                    throw new RegistryException(RegistryException.Kind.INVALID, "canary weight must be 1..99 percent, not " + c.weightPercent());
                }
                final Version v = require(c.model(), c.version(), VersionState.COMMITTED, VersionState.CANARY);
                final Version other = find(c.model(), VersionState.CANARY);
                if (other != null && other.number() != v.number())
                {
                    put(new Version(other.model(), other.number(), VersionState.COMMITTED, other.manifestDigest(), 0));
                }
                yield put(new Version(v.model(), v.number(), VersionState.CANARY, v.manifestDigest(),
                    c.weightPercent()));
            }
            case RegistryCommand.Rollback c ->
            {
                final Version active = find(checkName(c.model()), VersionState.ACTIVE);
                Version previous = null;
                for (final Version v : versions(c.model()).values())
                {
                    if (v.state() == VersionState.RETIRED)
                    {
                        previous = v; // the highest-numbered retired version
                    }
                }
                if (active == null || previous == null)
                {
                    throw new RegistryException(RegistryException.Kind.CONFLICT, "nothing to roll back to for " + c.model());
                }
                put(active.with(VersionState.RETIRED));
                yield put(previous.with(VersionState.ACTIVE));
            }
            case RegistryCommand.Delete c ->
            {
                advanceClock(c.atMillis());
                final Version v = require(c.model(), c.version(), VersionState.COMMITTED, VersionState.RETIRED,
                    VersionState.UPLOADING);
                for (final Map.Entry<LeaseKey, Long> lease : leases.entrySet())
                {
                    final LeaseKey k = lease.getKey();
                    if (k.model().equals(c.model()) && k.version() == c.version() && lease.getValue() > clockMillis)
                    {
                        throw new RegistryException(RegistryException.Kind.CONFLICT, c.model() + "@" + c.version() + " is leased by " + k.node() +
                            " and cannot be deleted");
                    }
                }
                yield put(v.with(VersionState.DELETED));
            }
            case RegistryCommand.AcquireLease c ->
            {
                final Version v = require(c.model(), c.version(), VersionState.ACTIVE, VersionState.CANARY,
                    VersionState.COMMITTED, VersionState.RETIRED);
                checkName(c.node());
                leases.put(new LeaseKey(c.node(), c.model(), c.version()), c.expiresAtMillis());
                yield v;
            }
            case RegistryCommand.ReleaseLease c ->
            {
                leases.remove(new LeaseKey(c.node(), c.model(), c.version()));
                yield null;
            }
        };
    }

    private static String checkDigest(final String digest)
    {
        if (digest == null || !digest.matches("[0-9a-f]{64}"))
        {
            throw new RegistryException(RegistryException.Kind.INVALID, "invalid manifest digest '" + digest +
                "' (a SHA-256 as 64 lower-case hex digits)");
        }
        return digest;
    }

    /** The newest version of a model still uploading the manifest with this digest, or null. */
    public Version uploading(final String model, final String manifestDigest)
    {
        final TreeMap<Integer, Version> versions = models.get(checkName(model));
        if (versions != null)
        {
            for (final Version v : versions.descendingMap().values())
            {
                if (v.state() == VersionState.UPLOADING && v.manifestDigest().equals(manifestDigest))
                {
                    return v;
                }
            }
        }
        return null;
    }

    /** The active version of a model (label {@code stable}), or null when it has none. */
    public Version active(final String model)
    {
        return models.containsKey(model) ? find(model, VersionState.ACTIVE) : null;
    }

    /** Model names, sorted. */
    public List<String> models()
    {
        return new ArrayList<>(models.keySet());
    }

    /** Unexpired leases on a version, as {@code node -> expiresAtMillis}. */
    public Map<String, Long> leasesOf(final String model, final int version, final long nowMillis)
    {
        final Map<String, Long> m = new TreeMap<>();
        leases.forEach((k, until) ->
        {
            if (k.model().equals(model) && k.version() == version && until > nowMillis)
            {
                m.put(k.node(), until);
            }
        });
        return m;
    }

    /** Advances the registry's clock (a command in a replicated log; here a method for tests and the server). */
    public void advanceClock(final long nowMillis)
    {
        clockMillis = Math.max(clockMillis, nowMillis);
    }

    /** A version by the label {@code stable} or {@code canary}, or by number. */
    public Version resolve(final String model, final String versionOrLabel)
    {
        final Version v = switch (versionOrLabel)
        {
            case "stable" -> find(checkName(model), VersionState.ACTIVE);
            case "canary" -> find(checkName(model), VersionState.CANARY);
            default ->
            {
                try
                {
                    yield versions(model).get(Integer.parseInt(versionOrLabel));
                }
                catch (final NumberFormatException ex)
                {
                    throw new RegistryException(RegistryException.Kind.NOT_FOUND, "unknown label '" + versionOrLabel + "' (stable, canary or a number)");
                }
            }
        };
        if (v == null || v.state() == VersionState.DELETED || v.state() == VersionState.UPLOADING)
        {
            throw new RegistryException(RegistryException.Kind.NOT_FOUND, "no visible version " + model + "@" + versionOrLabel);
        }
        return v;
    }

    public List<Version> versionsOf(final String model)
    {
        return new ArrayList<>(versions(model).values());
    }

    private TreeMap<Integer, Version> versions(final String model)
    {
        final TreeMap<Integer, Version> v = models.get(checkName(model));
        if (v == null)
        {
            throw new RegistryException(RegistryException.Kind.NOT_FOUND, "unknown model " + model);
        }
        return v;
    }

    private Version require(final String model, final int number, final VersionState... allowed)
    {
        final Version v = versions(model).get(number);
        if (v == null)
        {
            throw new RegistryException(RegistryException.Kind.NOT_FOUND, "unknown version " + model + "@" + number);
        }
        for (final VersionState s : allowed)
        {
            if (v.state() == s)
            {
                return v;
            }
        }
        throw new RegistryException(RegistryException.Kind.CONFLICT, model + "@" + number + " is " + v.state() + "; this needs one of " +
            java.util.Arrays.toString(allowed));
    }

    private Version find(final String model, final VersionState state)
    {
        for (final Version v : versions(model).values())
        {
            if (v.state() == state)
            {
                return v;
            }
        }
        return null;
    }

    private Version put(final Version v)
    {
        models.get(v.model()).put(v.number(), v);
        return v;
    }

    /** A comparable snapshot of the whole state (for tests and replication checks). */
    public String snapshot()
    {
        return models + " " + new TreeMap<>(leasesAsStrings());
    }

    private Map<String, Long> leasesAsStrings()
    {
        final Map<String, Long> m = new HashMap<>();
        leases.forEach((k, v) -> m.put(k.node() + ":" + k.model() + "@" + k.version(), v));
        return m;
    }
}
