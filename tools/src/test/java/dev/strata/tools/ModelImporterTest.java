package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.gguf.GgufWriter;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.Manifest;
import dev.strata.tiering.DirectoryObjectTier;
import dev.strata.tiering.EvictionPolicy;
import dev.strata.tiering.MemoryTier;
import dev.strata.tiering.TieredBlockStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Import cuts a GGUF into blocks with dedup; export gives back byte-identical tensors and the same metadata. */
class ModelImporterTest
{
    @TempDir
    Path dir;

    @Test
    void shouldRoundTripTensorsAndUploadOnlyChangedTensorOfNewVersion() throws Exception
    {
        final Path v1 = dir.resolve("v1.gguf");
        SyntheticModel.write(v1, SyntheticModel.Shape.parse("dim=256,layers=2,heads=4,kv=2,ffn=512"), GgmlType.Q8_0,
            null, 1);
        try (MemoryTier memory = new MemoryTier(64L << 20, EvictionPolicy.lru());
            DirectoryObjectTier object = new DirectoryObjectTier(dir.resolve("object"));
            TieredBlockStore store = TieredBlockStore.open(new TieredBlockStore.Context()
                .memory(memory).object(object).maxBlockBytes(16L << 20).prefetchThreads(1));
            GgufFile original = GgufFile.open(v1))
        {
            final ModelImporter.Result first = ModelImporter.importModel(original, "synth", store);
            // identical tensors (the all-ones norms) are one block: a fresh store lacks every distinct block
            assertEquals(new java.util.HashSet<>(first.manifest().allBlocks()).size(), first.blocksNew());
            assertTrue(first.blocksNew() < first.blocksTotal(), "identical norm tensors are stored once");
            assertEquals(first.manifest(), Manifest.decode(first.manifest().encode()), "manifest encoding round-trips");

            final Path exported = dir.resolve("exported.gguf");
            ModelImporter.export(first.manifest(), store, exported);
            try (GgufFile back = GgufFile.open(exported))
            {
                assertEquals(original.metadata().keys(), back.metadata().keys());
                assertEquals(original.tensors().keySet(), back.tensors().keySet());
                for (final GgufTensorInfo t : original.tensors().values())
                {
                    assertEquals(-1, original.tensorData(t).mismatch(back.tensorData(back.tensor(t.name()))),
                        t.name() + " byte-identical");
                }
            }

            // the same file again: nothing new
            assertEquals(0, ModelImporter.importModel(original, "synth", store).blocksNew());

            // v2 changes one tensor: only its blocks are new
            final Path v2 = dir.resolve("v2.gguf");
            final List<GgufWriter.Tensor> tensors = new ArrayList<>();
            for (final GgufTensorInfo t : original.tensors().values())
            {
                tensors.add(new GgufWriter.Tensor(t.name(), t.type(), t.shape(), ch ->
                {
                    final byte[] bytes = original.tensorData(t).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                    if (t.name().equals("output_norm.weight"))
                    {
                        bytes[0] ^= 1;
                    }
                    GgufWriter.writeFully(ch, ByteBuffer.wrap(bytes));
                }));
            }
            GgufWriter.write(v2, original.metadata(), tensors);
            try (GgufFile changed = GgufFile.open(v2))
            {
                final ModelImporter.Result second = ModelImporter.importModel(changed, "synth", store);
                final long changedBlocks = second.manifest().tensors().stream()
                    .filter(t -> t.name().equals("output_norm.weight")).mapToLong(t -> t.blocks().size()).sum();
                assertEquals(changedBlocks, second.blocksNew(), "only the changed tensor's blocks are uploaded");
                assertTrue(second.bytesNew() <= 4 * 256, "and only its bytes");
            }
        }
    }
}
