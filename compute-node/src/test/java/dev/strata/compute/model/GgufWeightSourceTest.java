package dev.strata.compute.model;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.HugePages;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.tensor.WeightTensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link GgufWeightSource#COPY_PROPERTY}: matrices of a huge page or more are copied off the file's mapping (onto
 * huge pages) with the same bytes, so the forward pass gives the same bits; smaller ones stay mapped; {@code false}
 * keeps them all on the mapping; a wrong value is refused with the choices.
 */
class GgufWeightSourceTest
{
    @TempDir
    Path dir;

    private final String before = System.getProperty(GgufWeightSource.COPY_PROPERTY);

    @AfterEach
    void restore()
    {
        if (before == null)
        {
            System.clearProperty(GgufWeightSource.COPY_PROPERTY);
        }
        else
        {
            System.setProperty(GgufWeightSource.COPY_PROPERTY, before);
        }
    }

    @Test
    void shouldCopyLargeMatricesOffTheMappingAndComputeTheSameLogits() throws Exception
    {
        assumeTrue(HugePages.used(HugePages.SIZE), "huge pages are for Linux only");
        final Path model = dir.resolve("m.gguf");
        // F32, dim 512, ffn 1024: the feed-forward matrices are 2 MiB (one huge page), the attention ones 1 MiB
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=512,layers=1,heads=8,kv=8,ffn=1024"), GgmlType.F32,
            null, 5);
        final int[] tokens = {1, 40, 77, 200, 13};
        final float[][] logits = new float[2][];
        for (final String copy : new String[]{"true", "false"})
        {
            System.setProperty(GgufWeightSource.COPY_PROPERTY, copy);
            try (GgufFile file = GgufFile.open(model); GgufWeightSource weights = new GgufWeightSource(file, false);
                ThreadPool pool = new ThreadPool(2))
            {
                final LayerWeights layer = weights.acquire(0);
                final WeightTensor gate = layer.wGate();
                assertEquals(HugePages.SIZE, gate.byteSize());
                assertEquals(copy.equals("false"), inside(file, gate),
                    "the 2 MiB matrix on the mapping, copy=" + copy);
                assertTrue(inside(file, layer.wq()), "a 1 MiB matrix stays on the mapping");
                assertEquals(-1, gate.data().asSlice(0, gate.byteSize()).mismatch(
                    file.tensorData(file.tensor("blk.0.ffn_gate.weight"))), "the file's bytes");
                final Llama llama = new Llama(weights, pool, 8);
                logits[copy.equals("true") ? 0 : 1] = llama.forward(tokens, 0, tokens.length, 0,
                    new KvCache(weights.config(), 16));
            }
        }
        assertArrayEquals(logits[1], logits[0], "the same bits from the copy");

        System.setProperty(GgufWeightSource.COPY_PROPERTY, "yes");
        try (GgufFile file = GgufFile.open(model))
        {
            final IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new GgufWeightSource(file, false));
            assertTrue(e.getMessage().contains("auto, true or false"), e.getMessage());
        }
    }

    /** Whether {@code w}'s bytes are the file's mapping. */
    private static boolean inside(final GgufFile file, final WeightTensor w)
    {
        final long start = file.segment().address();
        return w.data().address() >= start && w.data().address() < start + file.segment().byteSize();
    }

    @Test
    void shouldCopyOnAutoOnlyWhatFitsInHalfTheAvailableMemory()
    {
        assumeTrue(HugePages.used(HugePages.SIZE), "huge pages are for Linux only");
        final long available = GgufWeightSource.memoryAvailable();
        assertTrue(available > 0, "MemAvailable read from /proc/meminfo");
        System.clearProperty(GgufWeightSource.COPY_PROPERTY);
        assertTrue(GgufWeightSource.copyWeights(available / 4));
        assertFalse(GgufWeightSource.copyWeights(available));
        System.setProperty(GgufWeightSource.COPY_PROPERTY, "false");
        assertFalse(GgufWeightSource.copyWeights(1));
    }
}
