package dev.strata.tools;

import dev.strata.compute.chat.ChatMessage;
import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.engine.GenerationListener;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.engine.TokenEvent;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code strata generate}: streams a completion of a prompt from a local GGUF model, or, with
 * {@code --param-server}, as a stateless node streaming a pinned model version's weights from the parameter
 * service into a memory budget.
 */
@Command(name = "generate", description = "Generate text from a prompt with a local GGUF model, or with a model " +
    "version streamed from a parameter service (--param-server; then --model is NAME[@V|:label]).")
final class GenerateCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Mixin
    ModelOptions modelOptions;

    @Option(names = {"-p", "--prompt"}, required = true, description = "Prompt text.")
    String prompt;

    @Option(names = {"-n", "--max-tokens"}, description = "Most tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens = 256;

    @Option(names = "--temperature", description = "Sampling temperature; 0 is greedy (default: ${DEFAULT-VALUE}).")
    float temperature = 0.8f;

    @Option(names = "--top-k", description = "Top-k; 0 disables (default: ${DEFAULT-VALUE}).")
    int topK = 40;

    @Option(names = "--top-p", description = "Top-p (nucleus); 1 disables (default: ${DEFAULT-VALUE}).")
    float topP = 0.95f;

    @Option(names = "--min-p", description = "Min-p; 0 disables (default: ${DEFAULT-VALUE}).")
    float minP = 0.05f;

    @Option(names = "--repeat-penalty", description = "Repetition penalty; 1 disables (default: ${DEFAULT-VALUE}).")
    float repeatPenalty = 1.0f;

    @Option(names = "--repeat-last-n", description = "Tokens the repetition penalty looks back (default: ${DEFAULT-VALUE}).")
    int repeatLastN = 64;

    @Option(names = "--seed", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed = 42;

    @Option(names = "--context", description = "Most positions (prompt + generated) to use (default: model's).")
    int context = 0;

    @Option(names = "--kv-memory", paramLabel = "BYTES", description = "Memory of the KV block pool (K, M, G " +
        "suffixes; default: what one sequence of the context needs).")
    String kvMemory;

    @Option(names = "--kv-type", defaultValue = "f16", description = "Key/value storage: f16, f32 or q8 (default: " +
        "${DEFAULT-VALUE}).")
    String kvType;

    @Option(names = "--chat", description = "Wrap the prompt as a user message with the model's chat template.")
    boolean chat;

    @Option(names = "--system", description = "System message for --chat.")
    String system;

    @Option(names = "--param-server", paramLabel = "HOST:PORT", description = "Admin address of a parameter " +
        "service: stream the weights of --model NAME[@V|:label] from it.")
    String paramServer;

    @Option(names = "--token", description = "Token for the parameter service: its read-only node token is " +
        "enough (default: $STRATA_TOKEN, else the file named by $STRATA_TOKEN_FILE).")
    String token;

    @Option(names = "--token-file", paramLabel = "FILE", description = "Read the parameter service token from this " +
        "file (not shown by ps).")
    java.nio.file.Path tokenFile;

    @Option(names = "--memory-budget", paramLabel = "BYTES", description = "Node memory for streamed weights " +
        "(K, M, G suffixes; default: the whole model).")
    String memoryBudget;

    @Option(names = "--no-prefetch", description = "Fetch layers only when the forward pass needs them.")
    boolean noPrefetch;

    @Option(names = "--expert-trace-in", paramLabel = "FILE", description = "Train the expert predictor on a " +
        "recorded trace (from --expert-trace-out) before the first token.")
    java.nio.file.Path expertTraceIn;

    @Option(names = "--access-trace-out", paramLabel = "FILE", description = "Write every layer access of this " +
        "generation, with timings and what it found, for `strata trace replay` and the dashboard's what-if replay " +
        "(with --param-server).")
    java.nio.file.Path accessTraceOut;

    @Option(names = "--lookahead", paramLabel = "N", description = "Prefetch a fixed N layers ahead (default: adaptive;" +
        " with --param-server).")
    int lookahead;

    @Option(names = "--expert-trace-out", paramLabel = "FILE", description = "Write the experts this generation " +
        "used, in order, as a trace for --expert-trace-in (mixture-of-experts models).")
    java.nio.file.Path expertTraceOut;

    @Option(names = "--aeron", defaultValue = "udp", description = "How to reach the block server: udp (own media " +
        "driver) or ipc (the service's driver, same host). Default: ${DEFAULT-VALUE}.")
    String aeron;

    @Option(names = {"-v", "--verbose"}, description = "Print the runtime's settings (such as the kernel set) to " +
        "stderr before generating.")
    boolean verbose;

    @Override
    public Integer call() throws Exception
    {
        if (verbose)
        {
            spec.commandLine().getErr().println("kernels: " +
                dev.strata.compute.tensor.Kernels.fromSystemProperties().describe());
        }
        if (maxTokens < 0)
        {
            throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        }
        final SamplerConfig samplerConfig =
            new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        if (paramServer != null)
        {
            return callRemote(samplerConfig, out, err);
        }
        try (ModelOptions.Loaded loaded = modelOptions.load())
        {
            final java.nio.file.Path file = modelOptions.model.toAbsolutePath();
            run(loaded.file().metadata(), loaded.weights(), loaded.pool(), "file:" + file + ":" +
                java.nio.file.Files.size(file) + ":" + java.nio.file.Files.getLastModifiedTime(file).toMillis(),
                samplerConfig, out, err);
        }
        return 0;
    }

    /** As a stateless node: the weights of a pinned version streamed from the parameter service. */
    private Integer callRemote(final SamplerConfig samplerConfig, final PrintWriter out, final PrintWriter err)
        throws Exception
    {
        final ModelCommand.Ref ref = ModelCommand.Ref.parse(modelOptions.model.toString());
        final dev.strata.paramclient.ParamClient admin = new dev.strata.paramclient.ParamClient(paramServer,
            Tokens.resolve(token, tokenFile, "STRATA_TOKEN"));
        final dev.strata.compute.stream.StreamingWeightSource.Options defaults =
            dev.strata.compute.stream.StreamingWeightSource.Options.defaults(Long.MAX_VALUE);
        final String node = "node-" + ProcessHandle.current().pid() + "-" + java.util.UUID.randomUUID().toString()
            .substring(0, 8);
        try (dev.strata.compute.stream.RemoteModel model = dev.strata.compute.stream.RemoteModel.open(admin,
            ref.model(), ref.version(), node, 60_000))
        {
            final long budget = memoryBudget == null ? model.totalBytes() * 2 : Sizes.parse(memoryBudget);
            final dev.strata.prefetch.PrefetchStats stats = new dev.strata.prefetch.PrefetchStats();
            try (dev.strata.compute.stream.StreamingWeightSource weights =
                     new dev.strata.compute.stream.StreamingWeightSource(model, new dev.strata.compute.stream
                         .StreamingWeightSource.Options(budget, !noPrefetch, defaults.maxLookahead(),
                         defaults.requestTimeout(), defaults.retryFor(), mode(), defaults.localHost(), false,
                         expertTraceIn == null ? null : dev.strata.prefetch.AccessTrace.read(expertTraceIn)), stats);
                dev.strata.compute.tensor.ThreadPool pool = new dev.strata.compute.tensor.ThreadPool(
                    modelOptions.threads))
            {
                if (expertTraceOut != null && !weights.streamsExperts())
                {
                    throw new IllegalArgumentException("--expert-trace-out: " + model.pinned() + " streams no " +
                        "experts one by one (not a mixture-of-experts model)");
                }
                if (lookahead != 0)
                {
                    weights.apply(new dev.strata.prefetch.PrefetchSettings(lookahead,
                        dev.strata.prefetch.PrefetchSettings.Kind.LEARNED, 0));
                }
                if (accessTraceOut != null)
                {
                    weights.recordTrace(1 << 24);
                }
                err.printf("streaming %s (%s) into a budget of %s%n", model.pinned(),
                    Sizes.format(model.totalBytes()), Sizes.format(budget));
                run(model.metadata(), weights, pool, model.pinned().toString(), samplerConfig, out, err);
                final dev.strata.prefetch.PrefetchStats.Report r = stats.report();
                err.printf(java.util.Locale.ROOT, "weights: %s fetched, peak %s of %s budget | prefetch accuracy " +
                    "%.2f, coverage %.2f, timeliness %.2f, wasted %s, stall %.1f ms/token%n",
                    Sizes.format(r.fetchedBytes()), Sizes.format(weights.peakBytes()), Sizes.format(budget),
                    r.accuracy(), r.coverage(), r.timeliness(), Sizes.format(r.wastedBytes()), r.stallMillisPerToken());
                if (accessTraceOut != null)
                {
                    // the link as this run saw it (bytes over the time fetches took), for the replay's stall
                    // estimate; hits and misses do not depend on it
                    final long observed = stats.observedLinkBytesPerSecond();
                    final long link = observed > 0 ? Math.max(1_000_000L, observed) : 1_000_000_000L;
                    final dev.strata.prefetch.LayerTrace trace = weights.layerTrace(link);
                    trace.write(accessTraceOut);
                    err.printf("access trace: %d layer accesses written to %s%n", trace.size(), accessTraceOut);
                }
                if (expertTraceOut != null)
                {
                    final dev.strata.prefetch.AccessTrace trace = weights.expertTrace();
                    trace.write(expertTraceOut);
                    err.printf("expert trace: %d accesses written to %s%n", trace.trace().length, expertTraceOut);
                }
            }
        }
        return 0;
    }

    private dev.strata.compute.stream.BlockChannel.Mode mode()
    {
        return switch (aeron)
        {
            case "udp" -> dev.strata.compute.stream.BlockChannel.Mode.UDP;
            case "ipc" -> dev.strata.compute.stream.BlockChannel.Mode.IPC;
            default -> throw new IllegalArgumentException("--aeron is udp or ipc, not " + aeron);
        };
    }

    private void run(final dev.strata.compute.gguf.GgufMetadata metadata, final WeightSource weights,
        final ThreadPool pool, final String version, final SamplerConfig samplerConfig, final PrintWriter out,
        final PrintWriter err)
    {
        final Tokenizer tokenizer = Tokenizer.fromGguf(metadata);
        final int[] ids;
        if (chat)
        {
            final ChatTemplate template = ChatTemplate.fromMetadata(metadata);
            if (template.isFallback())
            {
                err.println("note: " + template.describe());
            }
            final List<ChatMessage> messages = new ArrayList<>();
            if (system != null)
            {
                messages.add(new ChatMessage("system", system));
            }
            messages.add(new ChatMessage("user", prompt));
            // the template writes BOS itself when the model wants it; parse special tokens in its output
            ids = tokenizer.encode(template.render(messages, true), false, true);
        }
        else
        {
            ids = tokenizer.encode(prompt, true, false);
            out.print(prompt);
        }
        final int maxContext = context > 0 ? Math.min(context, weights.config().contextLength()) :
            weights.config().contextLength();
        final KvBlockPool.KvType type = KvBlockPool.KvType.parse(kvType);
        final int blockTokens = 16;
        final long blockBytes = KvBlockPool.blockBytes(weights.config(), type, blockTokens);
        final long kvBytes = kvMemory != null ? Sizes.parse(kvMemory) :
            blockBytes * ((Math.min(maxContext, ids.length + Math.max(1, maxTokens)) + blockTokens - 1) / blockTokens);
        if (maxTokens == 0)
        {
            out.println();
            return;
        }
        try (Engine engine = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
            .modelVersion(version).kvType(type).kvMemory(kvBytes).blockTokens(blockTokens).maxContext(maxContext)
            .maxPrefillTokens(modelOptions.batch).maxBatchSize(1).maxPrefillBatchSize(1)))
        {
            final Completion result = engine.submit(new GenerationRequest(ids, samplerConfig, maxTokens, null, null,
                -1), new GenerationListener()
            {
                @Override
                public void onToken(final TokenEvent event)
                {
                    out.print(event.text());
                    out.flush();
                }

                @Override
                public void onComplete(final Completion completion)
                {
                }
            }).completion().join();
            if (result.error() != null)
            {
                throw new IllegalStateException(result.error());
            }
            out.println();
            final long prefillNanos = result.firstTokenNanos() - result.queueNanos();
            final long decodeNanos = result.totalNanos() - result.firstTokenNanos();
            final int decoded = Math.max(0, result.completionTokens() - 1);
            err.printf(java.util.Locale.ROOT, "%nprefill: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | " +
                "stop: %s%n", result.promptTokens(), prefillNanos <= 0 ? 0 : result.promptTokens() * 1e9 / prefillNanos,
                result.completionTokens(), decodeNanos <= 0 ? 0 : decoded * 1e9 / decodeNanos,
                result.reason() == dev.strata.compute.engine.FinishReason.LENGTH ? "limit" :
                    result.reason().name().toLowerCase(java.util.Locale.ROOT));
        }
    }
}
