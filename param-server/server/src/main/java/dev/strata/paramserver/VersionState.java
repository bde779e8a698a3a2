package dev.strata.paramserver;

/** Lifecycle of a model version: uploading → committed → active | canary → retired → deleted. */
public enum VersionState
{
    UPLOADING, COMMITTED, ACTIVE, CANARY, RETIRED, DELETED
}
