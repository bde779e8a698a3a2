package dev.strata.compute.stream;

import dev.strata.compute.model.GlobalWeights;
import dev.strata.compute.model.LayerWeights;
import dev.strata.compute.tensor.WeightTensor;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;

/**
 * A unit's state on this node: where it is (absent, queued, fetching, resident), its buffer, who pins it, and
 * the weights built over its buffer once it arrived. Guarded by the streaming source's lock, except that the
 * fetcher reads {@link #unit}, {@link #buffer}, {@link #demand} and {@link #neededBy} of a unit it was handed.
 */
final class Slot
{
    enum State
    {
        ABSENT, QUEUED, FETCHING, RESIDENT
    }

    final UnitLayout.Unit unit;
    State state = State.ABSENT;
    MemorySegment buffer;
    int pins;
    boolean prefetched;
    boolean used;
    boolean demand;
    /** When this unit is expected to be needed ({@link System#nanoTime}): the service serves earliest first. */
    long neededBy;
    long retryUntil;
    /** When its fetch was queued ({@link System#nanoTime}): for the fetch latency. */
    long scheduledAt;
    CompletableFuture<Void> ready;
    LayerWeights layer;
    GlobalWeights globals;
    WeightTensor[] expertWeights;

    Slot(final UnitLayout.Unit unit)
    {
        this.unit = unit;
    }

    long bytes()
    {
        return unit.bytes();
    }
}
