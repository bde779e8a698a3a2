package dev.strata.tools;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tokenizer.Tokenizer;
import dev.strata.serve.OpenAiServer;
import dev.strata.serve.ServedModel;
import dev.strata.serve.SingleModelCatalog;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * {@code strata serve}: the OpenAI-compatible API over the engine, on a local GGUF file. Stops cleanly on Ctrl-C:
 * new requests get 503, the HTTP server stops, the engine ends what runs.
 */
@Command(name = "serve", description = "Serve a GGUF model over an OpenAI-compatible HTTP API (/v1/completions, " +
    "/v1/chat/completions, /v1/models; streaming with server-sent events).")
final class ServeCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, description = "GGUF model file.")
    Path model;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Interface to listen on (default: " +
        "${DEFAULT-VALUE}; 0.0.0.0 for all).")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "HTTP port (default: ${DEFAULT-VALUE}; 0 picks " +
        "one).")
    int port;

    @Option(names = "--api-key", description = "Require Authorization: Bearer KEY (default: $STRATA_API_KEY; " +
        "required when --host is not a loopback address).")
    String apiKey;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--kv-memory", defaultValue = "1G", description = "KV block pool (default: ${DEFAULT-VALUE}).")
    String kvMemory;

    @Option(names = "--kv-type", defaultValue = "f16", description = "f16 or f32 (default: ${DEFAULT-VALUE}).")
    String kvType;

    @Option(names = "--max-batch", defaultValue = "32", description = "Most sequences per step (default: " +
        "${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-prefill-tokens", defaultValue = "512", description = "Most prompt tokens per step " +
        "(default: ${DEFAULT-VALUE}).")
    int maxPrefillTokens;

    @Option(names = "--context", description = "Most positions per sequence (default: the model's).")
    int context;

    @Option(names = "--served-name", description = "Model id in the API (default: the file name without .gguf).")
    String servedName;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter err = spec.commandLine().getErr();
        final String key = apiKey != null ? apiKey : System.getenv("STRATA_API_KEY");
        if (key == null && !isLoopback(host))
        {
            throw new IllegalArgumentException("--host " + host + " is reachable from other machines: set --api-key " +
                "(or STRATA_API_KEY)");
        }
        if (threads < 1)
        {
            throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
        }
        final String name = servedName != null ? servedName : model.getFileName().toString().replaceFirst(
            "(?i)\\.gguf$", "");
        final Path file = model.toAbsolutePath();
        final String version = "file:" + file + ":" + Files.size(file) + ":" +
            Files.getLastModifiedTime(file).toMillis();
        final CountDownLatch stop = new CountDownLatch(1);
        final CountDownLatch closed = new CountDownLatch(1);
        // Ctrl-C: let the main thread close the server and the engine before the JVM goes
        final Thread hook = new Thread(() ->
        {
            stop.countDown();
            try
            {
                closed.await(15, java.util.concurrent.TimeUnit.SECONDS);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
            }
        }, "strata-serve-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try (GgufWeightSource weights = new GgufWeightSource(GgufFile.open(model), true);
            ThreadPool pool = new ThreadPool(threads))
        {
            final var metadata = weights.file().metadata();
            final Tokenizer tokenizer = Tokenizer.fromGguf(metadata);
            final ChatTemplate template = ChatTemplate.fromMetadata(metadata);
            try (Engine engine = Engine.launch(new Engine.Context().weights(weights).pool(pool).tokenizer(tokenizer)
                .modelVersion(version).kvType(KvBlockPool.KvType.parse(kvType)).kvMemory(Sizes.parse(kvMemory))
                .maxBatchSize(maxBatch).maxPrefillTokens(maxPrefillTokens).maxContext(context).name("strata-engine-" +
                    name));
                OpenAiServer server = OpenAiServer.launch(new OpenAiServer.Context().host(host).port(port)
                    .apiKey(key).catalog(new SingleModelCatalog(new ServedModel(name, engine, tokenizer, template,
                        System.currentTimeMillis() / 1000), List.of(model.getFileName().toString())))))
            {
                err.printf("serving %s (context %d, KV pool %s in %d blocks) at http://%s:%d/v1 %s%n", name,
                    engine.maxContext(), Sizes.format(engine.stats().kvBlocks() * engine.kvBlockBytes()),
                    engine.stats().kvBlocks(), host, server.port(), key != null ? "(API key required)" : "");
                if (template.isFallback())
                {
                    err.println("note: " + template.describe());
                }
                err.flush();
                stop.await();
                err.println("stopping");
                err.flush();
            }
        }
        finally
        {
            closed.countDown();
        }
        return 0;
    }

    private static boolean isLoopback(final String host)
    {
        try
        {
            return java.net.InetAddress.getByName(host).isLoopbackAddress();
        }
        catch (final java.net.UnknownHostException e)
        {
            throw new IllegalArgumentException("--host " + host + ": unknown host");
        }
    }
}
