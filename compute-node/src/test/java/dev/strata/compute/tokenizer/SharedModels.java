package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufMetadata;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Locates the shared model files ({@code strata.shared.models}, set by surefire to {@code <root>/../shared/models},
 * or {@code ../../shared/models} from a module directory without it) and skips the calling test when one is absent.
 */
final class SharedModels
{
    static final String SPM_VOCAB = "llama.cpp-vocab/ggml-vocab-llama-spm.gguf";
    static final String GPT2_VOCAB = "llama.cpp-vocab/ggml-vocab-gpt-2.gguf";
    static final String PHI3_VOCAB = "llama.cpp-vocab/ggml-vocab-phi-3.gguf";
    static final String STORIES = "stories260K.gguf";
    static final String GOLDEN = "golden-once-upon-a-time.json";

    private static final Map<String, Tokenizer> TOKENIZERS = new ConcurrentHashMap<>();

    private SharedModels()
    {
    }

    static Path dir()
    {
        final String configured = System.getProperty("strata.shared.models");
        return configured != null ? Path.of(configured) : Path.of("").toAbsolutePath().resolve("../../shared/models").normalize();
    }

    /** The file, or the test is skipped with a message naming it. */
    static Path require(final String relative)
    {
        final Path path = dir().resolve(relative);
        assumeTrue(Files.isRegularFile(path), () -> "shared model file " + path + " is absent (set -Dstrata.shared.models); skipping");
        return path;
    }

    static GgufMetadata metadata(final String relative)
    {
        final Path path = require(relative);
        try (GgufFile file = GgufFile.open(path))
        {
            return file.metadata();
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** The tokenizer of a shared GGUF file, built once per test run. */
    static Tokenizer tokenizer(final String relative)
    {
        require(relative);
        return TOKENIZERS.computeIfAbsent(relative, r -> Tokenizer.fromGguf(metadata(r)));
    }

    static String read(final String relative)
    {
        try
        {
            return Files.readString(require(relative));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }
}
