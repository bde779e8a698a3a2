package dev.strata.tools;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.Llama;
import dev.strata.compute.tensor.ThreadPool;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;

/** Options shared by commands that load a local GGUF model. */
final class ModelOptions
{
    @Option(names = {"-m", "--model"}, required = true, description = "GGUF model file.")
    Path model;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--batch", description = "Most prompt tokens per forward pass (default: ${DEFAULT-VALUE}).")
    int batch = 128;

    /** A loaded model and the resources behind it. */
    record Loaded(GgufFile file, GgufWeightSource weights, ThreadPool pool, Llama llama) implements AutoCloseable
    {
        @Override
        public void close()
        {
            pool.close();
            weights.close();
        }
    }

    Loaded load() throws IOException
    {
        if (threads < 1)
        {
            throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
        }
        if (batch < 1)
        {
            throw new IllegalArgumentException("--batch must be at least 1, got " + batch);
        }
        final GgufFile file = GgufFile.open(model);
        try
        {
            final GgufWeightSource weights = new GgufWeightSource(file, true);
            final ThreadPool pool = new ThreadPool(threads);
            return new Loaded(file, weights, pool, new Llama(weights, pool, batch));
        }
        catch (final RuntimeException ex)
        {
            file.close();
            throw ex;
        }
    }
}
