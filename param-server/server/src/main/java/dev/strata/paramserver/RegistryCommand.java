package dev.strata.paramserver;

/**
 * The commands of the model registry's state machine. Each carries everything it needs (including the time, so
 * that replaying a log is deterministic), which is what lets the registry run replicated on a Raft log later.
 */
public sealed interface RegistryCommand
{
    /**
     * Starts a new version of a model (it gets the next number) for the manifest whose SHA-256 is
     * {@code manifestDigest}: an interrupted upload of the same manifest finds and resumes this version.
     */
    record CreateVersion(String model, String manifestDigest) implements RegistryCommand
    {
    }

    /** Makes a fully uploaded and verified version visible; the digest must be the one it was created with. */
    record Commit(String model, int version, String manifestDigest) implements RegistryCommand
    {
    }

    /** Makes a committed (or canary) version the active one and labels it {@code stable}; the previous active is retired. */
    record Promote(String model, int version) implements RegistryCommand
    {
    }

    /** Serves a committed version to {@code weightPercent}% of requests, labelled {@code canary}. */
    record Canary(String model, int version, int weightPercent) implements RegistryCommand
    {
    }

    /** Reactivates the most recently retired version and retires the active one. */
    record Rollback(String model) implements RegistryCommand
    {
    }

    /** Deletes a retired or committed version that no lease unexpired at {@code atMillis} covers. */
    record Delete(String model, int version, long atMillis) implements RegistryCommand
    {
    }

    /** A compute node holds a version until {@code expiresAtMillis}. */
    record AcquireLease(String node, String model, int version, long expiresAtMillis) implements RegistryCommand
    {
    }

    record ReleaseLease(String node, String model, int version) implements RegistryCommand
    {
    }
}
