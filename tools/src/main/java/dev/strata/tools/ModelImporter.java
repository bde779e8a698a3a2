package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.gguf.GgufWriter;
import dev.strata.paramserver.Manifest;
import dev.strata.tiering.BlockId;
import dev.strata.tiering.TieredBlockStore;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Cuts a GGUF model into content-addressed blocks and back. Each tensor is cut on row boundaries (so on
 * quantization-block boundaries) into blocks of about {@link #TARGET_BLOCK_BYTES}; only blocks the store lacks
 * are uploaded, so a new version that changes one tensor costs only that tensor's blocks. The GGUF metadata
 * travels as one more block (a GGUF file with no tensors). GGUF knowledge stays here, on the client side; the
 * parameter service sees opaque blocks and a {@link Manifest}.
 */
final class ModelImporter
{
    static final long TARGET_BLOCK_BYTES = 2L << 20;

    /** What an import did. */
    record Result(Manifest manifest, int blocksTotal, int blocksNew, long bytesNew)
    {
    }

    private ModelImporter()
    {
    }

    static Result importModel(final GgufFile file, final String model, final TieredBlockStore store)
        throws IOException
    {
        final int[] newBlocks = {0};
        final long[] newBytes = {0};
        final int[] total = {0};
        final BlockId metadata = upload(store, metadataBlock(file), newBlocks, newBytes, total);
        final List<Manifest.Tensor> tensors = new ArrayList<>();
        for (final GgufTensorInfo info : file.tensors().values())
        {
            final MemorySegment data = file.tensorData(info);
            final long rowBytes = info.type().byteSize(info.rowLength());
            final long rowsPerBlock = Math.max(1, TARGET_BLOCK_BYTES / rowBytes);
            final long rows = info.rowCount();
            final List<BlockId> blocks = new ArrayList<>();
            for (long r = 0; r < rows; r += rowsPerBlock)
            {
                final long end = Math.min(rows, r + rowsPerBlock);
                blocks.add(upload(store, data.asSlice(r * rowBytes, (end - r) * rowBytes), newBlocks, newBytes, total));
            }
            tensors.add(new Manifest.Tensor(info.name(), info.type().name(), info.shape().clone(), blocks));
        }
        return new Result(new Manifest(model, metadata, tensors), total[0], newBlocks[0], newBytes[0]);
    }

    private static BlockId upload(final TieredBlockStore store, final MemorySegment bytes, final int[] newBlocks,
        final long[] newBytes, final int[] total) throws IOException
    {
        total[0]++;
        final BlockId id = BlockId.of(bytes);
        if (!store.contains(id))
        {
            store.put(bytes);
            newBlocks[0]++;
            newBytes[0] += bytes.byteSize();
        }
        return id;
    }

    /** The model's metadata as a GGUF file with no tensors. */
    private static MemorySegment metadataBlock(final GgufFile file) throws IOException
    {
        final Path tmp = Files.createTempFile("strata-metadata", ".gguf");
        try
        {
            GgufWriter.write(tmp, file.metadata(), List.of());
            return MemorySegment.ofArray(Files.readAllBytes(tmp));
        }
        finally
        {
            Files.deleteIfExists(tmp);
        }
    }

    /** Writes a version back as a GGUF file whose tensors are byte-identical to the uploaded ones. */
    static void export(final Manifest manifest, final TieredBlockStore store, final Path out) throws IOException
    {
        final GgufFile meta;
        try (TieredBlockStore.Pinned p = store.acquire(manifest.metadata()))
        {
            final byte[] copy = p.bytes().toArray(ValueLayout.JAVA_BYTE);
            meta = GgufFile.parse(MemorySegment.ofArray(copy));
        }
        final List<GgufWriter.Tensor> tensors = new ArrayList<>();
        for (final Manifest.Tensor t : manifest.tensors())
        {
            tensors.add(new GgufWriter.Tensor(t.name(), GgmlType.valueOf(t.type()), t.shape(), ch ->
            {
                for (final BlockId id : t.blocks())
                {
                    try (TieredBlockStore.Pinned p = store.acquire(id))
                    {
                        GgufWriter.writeFully(ch, ByteBuffer.wrap(p.bytes().toArray(ValueLayout.JAVA_BYTE)));
                    }
                }
            }));
        }
        GgufWriter.write(out, meta.metadata(), tensors);
    }
}
