package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.gguf.GgufWriter;
import dev.strata.paramclient.Manifest;
import dev.strata.transport.BlockId;
import dev.strata.tiering.TieredBlockStore;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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
    /** Ids per "which blocks do you lack" question. */
    static final int MISSING_BATCH = 1000;

    /** Where blocks go: a local store or the parameter service. */
    interface BlockSink
    {
        /** The ids among these that the sink lacks. */
        List<BlockId> missing(List<BlockId> ids) throws IOException;

        void put(BlockId id, MemorySegment bytes) throws IOException;
    }

    /** Where blocks come from on export. Returned bytes are verified against the id by the caller. */
    interface BlockSource
    {
        MemorySegment get(BlockId id) throws IOException;
    }

    /** Progress of an upload: called after each block with the bytes done and the bytes to send in all. */
    interface Progress
    {
        void update(long bytesDone, long bytesTotal, int blocksDone, int blocksTotal);
    }

    /** A model cut into blocks: the manifest and every distinct block's bytes, in manifest order. */
    record Plan(Manifest manifest, Map<BlockId, MemorySegment> blocks)
    {
        int blocksTotal()
        {
            return manifest.allBlocks().size();
        }
    }

    /** What an import did. */
    record Result(Manifest manifest, int blocksTotal, int blocksNew, long bytesNew)
    {
    }

    private ModelImporter()
    {
    }

    /** Cuts every tensor on row boundaries into blocks of about {@link #TARGET_BLOCK_BYTES}; no copy of tensor data. */
    static Plan plan(final GgufFile file, final String model) throws IOException
    {
        final Map<BlockId, MemorySegment> blocks = new LinkedHashMap<>();
        final MemorySegment meta = metadataBlock(file);
        final BlockId metadata = BlockId.of(meta);
        blocks.put(metadata, meta);
        final List<Manifest.Tensor> tensors = new ArrayList<>();
        for (final GgufTensorInfo info : file.tensors().values())
        {
            final MemorySegment data = file.tensorData(info);
            final long rowBytes = info.type().byteSize(info.rowLength());
            final long rowsPerBlock = Math.max(1, TARGET_BLOCK_BYTES / rowBytes);
            final long rows = info.rowCount();
            // a 3-D tensor (experts' matrices one after the other) is cut within each matrix, so that a node can
            // fetch one expert without its neighbours
            final long rowsPerMatrix = info.shape().length == 3 ? info.shape()[1] : rows;
            final List<BlockId> ids = new ArrayList<>();
            for (long m = 0; m < rows; m += rowsPerMatrix)
            {
                final long matrixEnd = Math.min(rows, m + rowsPerMatrix);
                for (long r = m; r < matrixEnd; r += rowsPerBlock)
                {
                    final long end = Math.min(matrixEnd, r + rowsPerBlock);
                    final MemorySegment slice = data.asSlice(r * rowBytes, (end - r) * rowBytes);
                    final BlockId id = BlockId.of(slice);
                    blocks.putIfAbsent(id, slice);
                    ids.add(id);
                }
            }
            tensors.add(new Manifest.Tensor(info.name(), info.type().name(), info.shape().clone(), ids));
        }
        return new Plan(new Manifest(model, metadata, tensors), blocks);
    }

    /** Sends the blocks the sink lacks (asking in batches), in manifest order, one at a time. */
    static Result upload(final Plan plan, final BlockSink sink, final Progress progress) throws IOException
    {
        return upload(plan, sink, progress, 1);
    }

    /**
     * Sends the blocks the sink lacks, {@code parallelism} at a time (the sink must then be thread-safe), so that
     * one block's transfer overlaps another's durable write on the service.
     */
    static Result upload(final Plan plan, final BlockSink sink, final Progress progress, final int parallelism)
        throws IOException
    {
        final List<BlockId> distinct = new ArrayList<>(plan.blocks().keySet());
        final List<BlockId> missing = new ArrayList<>();
        for (int i = 0; i < distinct.size(); i += MISSING_BATCH)
        {
            missing.addAll(sink.missing(distinct.subList(i, Math.min(distinct.size(), i + MISSING_BATCH))));
        }
        long total = 0;
        for (final BlockId id : missing)
        {
            total += id.length();
        }
        final long bytesTotal = total;
        progress.update(0, total, 0, missing.size());
        final java.util.concurrent.atomic.AtomicLong done = new java.util.concurrent.atomic.AtomicLong();
        final java.util.concurrent.atomic.AtomicInteger count = new java.util.concurrent.atomic.AtomicInteger();
        final java.util.concurrent.atomic.AtomicInteger next = new java.util.concurrent.atomic.AtomicInteger();
        final java.util.concurrent.atomic.AtomicReference<IOException> failure =
            new java.util.concurrent.atomic.AtomicReference<>();
        final Runnable worker = () ->
        {
            int i;
            while (failure.get() == null && (i = next.getAndIncrement()) < missing.size())
            {
                final BlockId id = missing.get(i);
                try
                {
                    sink.put(id, plan.blocks().get(id));
                }
                catch (final IOException ex)
                {
                    failure.compareAndSet(null, ex);
                    return;
                }
                final long d = done.addAndGet(id.length());
                final int c = count.incrementAndGet();
                synchronized (progress)
                {
                    progress.update(d, bytesTotal, c, missing.size());
                }
            }
        };
        final List<Thread> threads = new ArrayList<>();
        for (int t = 1; t < parallelism; t++)
        {
            threads.add(Thread.ofPlatform().name("strata-upload-" + t).start(worker));
        }
        worker.run();
        for (final Thread t : threads)
        {
            try
            {
                t.join();
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("upload interrupted");
            }
        }
        if (failure.get() != null)
        {
            throw failure.get();
        }
        return new Result(plan.manifest(), plan.blocksTotal(), missing.size(), total);
    }

    /** Imports into a local store. */
    static Result importModel(final GgufFile file, final String model, final TieredBlockStore store)
        throws IOException
    {
        return upload(plan(file, model), storeSink(store), (a, b, c, d) -> { });
    }

    static BlockSink storeSink(final TieredBlockStore store)
    {
        return new BlockSink()
        {
            @Override
            public List<BlockId> missing(final List<BlockId> ids) throws IOException
            {
                final List<BlockId> m = new ArrayList<>();
                for (final BlockId id : ids)
                {
                    if (!store.contains(id))
                    {
                        m.add(id);
                    }
                }
                return m;
            }

            @Override
            public void put(final BlockId id, final MemorySegment bytes) throws IOException
            {
                store.put(bytes);
            }
        };
    }

    static BlockSource storeSource(final TieredBlockStore store)
    {
        return id ->
        {
            try (TieredBlockStore.Pinned p = store.acquire(id))
            {
                return MemorySegment.ofArray(p.bytes().toArray(ValueLayout.JAVA_BYTE));
            }
        };
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

    static void export(final Manifest manifest, final TieredBlockStore store, final Path out) throws IOException
    {
        export(manifest, storeSource(store), out);
    }

    /** Writes a version back as a GGUF file whose tensors are byte-identical to the uploaded ones. */
    static void export(final Manifest manifest, final BlockSource source, final Path out) throws IOException
    {
        final GgufFile meta = GgufFile.parse(verified(source, manifest.metadata()));
        final List<GgufWriter.Tensor> tensors = new ArrayList<>();
        for (final Manifest.Tensor t : manifest.tensors())
        {
            tensors.add(new GgufWriter.Tensor(t.name(), GgmlType.valueOf(t.type()), t.shape(), ch ->
            {
                for (final BlockId id : t.blocks())
                {
                    GgufWriter.writeFully(ch, verified(source, id).asByteBuffer());
                }
            }));
        }
        final Path tmp = out.resolveSibling(out.getFileName() + ".part");
        GgufWriter.write(tmp, meta.metadata(), tensors);
        Files.move(tmp, out, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    private static MemorySegment verified(final BlockSource source, final BlockId id) throws IOException
    {
        final MemorySegment bytes = source.get(id);
        if (!id.matches(bytes))
        {
            throw new IOException("block " + id + " came back with other content");
        }
        return bytes;
    }
}
