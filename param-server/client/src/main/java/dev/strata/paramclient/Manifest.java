package dev.strata.paramclient;

import dev.strata.transport.BlockId;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A model version as the parameter service sees it: an opaque metadata block (architecture and tokenizer
 * metadata, in whatever format the runtime uses) and, per tensor, its name, type, shape and ordered block ids.
 * The service never interprets types or metadata; the compute-node runtime does.
 *
 * @param model    model name.
 * @param metadata the block holding the model's metadata.
 * @param tensors  in model order.
 */
public record Manifest(String model, BlockId metadata, List<Tensor> tensors)
{
    /**
     * One tensor.
     *
     * @param type   the runtime's type name (e.g. {@code Q8_0}); opaque here.
     * @param shape  dimensions, innermost first.
     * @param blocks ordered block ids whose concatenation is the tensor's bytes.
     */
    public record Tensor(String name, String type, long[] shape, List<BlockId> blocks)
    {
        public long byteSize()
        {
            long n = 0;
            for (final BlockId b : blocks)
            {
                n += b.length();
            }
            return n;
        }

        @Override
        public boolean equals(final Object o)
        {
            return o instanceof Tensor t && t.name.equals(name) && t.type.equals(type) &&
                Arrays.equals(t.shape, shape) && t.blocks.equals(blocks);
        }

        @Override
        public int hashCode()
        {
            return name.hashCode() * 31 + blocks.hashCode();
        }
    }

    /** Every block the version needs (metadata first), possibly with repeats. */
    public List<BlockId> allBlocks()
    {
        final List<BlockId> all = new ArrayList<>();
        all.add(metadata);
        for (final Tensor t : tensors)
        {
            all.addAll(t.blocks());
        }
        return all;
    }

    /** A stable binary encoding (its SHA-256 is the digest a commit records). */
    public byte[] encode()
    {
        try
        {
            final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            final DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(1); // format version
            out.writeUTF(model);
            writeId(out, metadata);
            out.writeInt(tensors.size());
            for (final Tensor t : tensors)
            {
                out.writeUTF(t.name());
                out.writeUTF(t.type());
                out.writeInt(t.shape().length);
                for (final long d : t.shape())
                {
                    out.writeLong(d);
                }
                out.writeInt(t.blocks().size());
                for (final BlockId b : t.blocks())
                {
                    writeId(out, b);
                }
            }
            out.flush();
            return bytes.toByteArray();
        }
        catch (final IOException ex)
        {
            throw new IllegalStateException(ex);
        }
    }

    public static Manifest decode(final byte[] encoded) throws IOException
    {
        final DataInputStream in = new DataInputStream(new java.io.ByteArrayInputStream(encoded));
        final int format = in.readInt();
        if (format != 1)
        {
            throw new IOException("unknown manifest format " + format);
        }
        final String model = in.readUTF();
        final BlockId metadata = readId(in);
        final int n = in.readInt();
        if (n < 0 || n > 1_000_000)
        {
            throw new IOException("absurd tensor count " + n + " in manifest");
        }
        final List<Tensor> tensors = new ArrayList<>(n);
        for (int i = 0; i < n; i++)
        {
            final String name = in.readUTF();
            final String type = in.readUTF();
            final int dims = in.readInt();
            if (dims < 1 || dims > 8)
            {
                throw new IOException("tensor " + name + " has " + dims + " dimensions");
            }
            final long[] shape = new long[dims];
            for (int d = 0; d < dims; d++)
            {
                shape[d] = in.readLong();
            }
            final int blocks = in.readInt();
            if (blocks < 1 || blocks > 10_000_000)
            {
                throw new IOException("tensor " + name + " has " + blocks + " blocks");
            }
            final List<BlockId> ids = new ArrayList<>(blocks);
            for (int b = 0; b < blocks; b++)
            {
                ids.add(readId(in));
            }
            tensors.add(new Tensor(name, type, shape, ids));
        }
        return new Manifest(model, metadata, tensors);
    }

    private static void writeId(final DataOutputStream out, final BlockId id) throws IOException
    {
        out.write(id.sha256());
        out.writeLong(id.length());
    }

    private static BlockId readId(final DataInputStream in) throws IOException
    {
        final byte[] digest = new byte[BlockId.DIGEST_BYTES];
        in.readFully(digest);
        return new BlockId(digest, in.readLong());
    }
}
