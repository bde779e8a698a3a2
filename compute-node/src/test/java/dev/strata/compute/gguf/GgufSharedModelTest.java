package dev.strata.compute.gguf;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GgufSharedModelTest
{
    private static Path sharedModel(final String name)
    {
        final String configured = System.getProperty("strata.shared.models");
        // surefire sets the property to <project>/../shared/models; from a module directory that is ../../shared
        final Path file = (configured != null ? Path.of(configured) : Path.of("").toAbsolutePath().resolve("../../shared/models").normalize()).resolve(name);
        Assumptions.assumeTrue(Files.isRegularFile(file),
            "skipped: shared model " + name + " is absent (looked in " + file + ")");
        return file;
    }

    @Test
    void shouldReadStories260K() throws IOException
    {
        final Path model = sharedModel("stories260K.gguf");
        try (GgufFile file = GgufFile.open(model))
        {
            assertEquals(3, file.version());
            assertEquals(48, file.tensors().size());
            assertEquals("llama", file.metadata().getString("general.architecture"));
            assertEquals(64, file.metadata().getInt("llama.embedding_length"));
            final long size = Files.size(model);
            for (final GgufTensorInfo info : file.tensors().values())
            {
                assertEquals(0, info.offset() % file.alignment(), info.name());
                assertTrue(file.dataOffset() + info.offset() + info.byteSize() <= size, info.name());
                assertEquals(info.byteSize(), file.tensorData(info).byteSize(), info.name());
            }
            assertTrue(file.metadata().getStringArray("tokenizer.ggml.tokens").length > 0);
        }
    }

    @Test
    void shouldRewriteStories260KMetadataIdentically(@org.junit.jupiter.api.io.TempDir final Path dir)
        throws IOException
    {
        final Path model = sharedModel("stories260K.gguf");
        try (GgufFile file = GgufFile.open(model))
        {
            final Path copy = dir.resolve("copy.gguf");
            final java.util.List<GgufWriter.Tensor> tensors = new java.util.ArrayList<>();
            for (final GgufTensorInfo info : file.tensors().values())
            {
                tensors.add(new GgufWriter.Tensor(info.name(), info.type(), info.shape(),
                    ch -> GgufWriter.writeFully(ch, file.tensorData(info).asByteBuffer())));
            }
            GgufWriter.write(copy, file.metadata(), tensors);
            try (GgufFile reread = GgufFile.open(copy))
            {
                GgufRoundTripTest.assertSameMetadata(file.metadata(), reread.metadata());
                assertEquals(file.tensors().keySet(), reread.tensors().keySet());
                for (final GgufTensorInfo info : file.tensors().values())
                {
                    assertEquals(-1L, file.tensorData(info).mismatch(reread.tensorData(reread.tensor(info.name()))),
                        info.name());
                }
            }
        }
    }
}
