package dev.strata.tools;

import dev.strata.compute.engine.Engine;
import dev.strata.compute.model.KvBlockPool;
import picocli.CommandLine.Option;

import java.util.List;

/**
 * The engine's options, shared by {@code strata serve} and {@code strata node} (a picocli mixin): one definition of
 * each option and its default, applied to an {@link Engine.Context}, and passed on to the node processes a split
 * deployment starts.
 */
final class EngineOptions
{
    @Option(names = "--kv-memory", defaultValue = "1G", description = "KV block pool (default: ${DEFAULT-VALUE}).")
    String kvMemory;

    @Option(names = "--kv-type", defaultValue = "f16", description = "f16, f32 or q8 (int8 with a scale per " +
        "position and key-value head: half F16's bytes; default: ${DEFAULT-VALUE}).")
    String kvType;

    @Option(names = "--max-batch", defaultValue = "32", description = "Most sequences per step (default: " +
        "${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-prefill-tokens", defaultValue = "512", description = "Most prompt tokens per step " +
        "(default: ${DEFAULT-VALUE}).")
    int maxPrefillTokens;

    @Option(names = "--context", description = "Most positions per sequence (default: the model's).")
    int context;

    @Option(names = "--warmup-steps", defaultValue = "16", description = "Decode steps per batch size of the " +
        "warm-up an engine runs before it takes requests, so the JIT has compiled the step before the first " +
        "request waits on it; 0 turns it off (default: ${DEFAULT-VALUE}).")
    int warmUpSteps;

    /** Sets these options on {@code c}; a malformed size or type throws {@link IllegalArgumentException}. */
    Engine.Context apply(final Engine.Context c)
    {
        return c.kvType(KvBlockPool.KvType.parse(kvType)).kvMemory(Sizes.parse(kvMemory)).maxBatchSize(maxBatch)
            .maxPrefillTokens(maxPrefillTokens).maxContext(context).warmUpSteps(warmUpSteps);
    }

    /** The same options as command-line arguments, for a child process. */
    List<String> args()
    {
        return List.of("--kv-memory", kvMemory, "--kv-type", kvType, "--max-batch", Integer.toString(maxBatch),
            "--max-prefill-tokens", Integer.toString(maxPrefillTokens), "--context", Integer.toString(context),
            "--warmup-steps", Integer.toString(warmUpSteps));
    }
}
