package dev.strata.compute.stream;

import dev.strata.compute.model.WeightViews;
import dev.strata.paramclient.Manifest;
import dev.strata.transport.BlockId;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UnitLayoutTest
{
    private final Map<String, Manifest.Tensor> tensors = new HashMap<>();
    private byte next;

    /** A tensor cut into blocks of the given sizes (distinct content, so distinct ids). */
    private Manifest.Tensor tensor(final String name, final int... blockSizes)
    {
        final List<BlockId> ids = new java.util.ArrayList<>();
        for (final int size : blockSizes)
        {
            final byte[] b = new byte[size];
            b[0] = next++;
            ids.add(BlockId.of(b));
        }
        final Manifest.Tensor t = new Manifest.Tensor(name, "F32", new long[]{1}, ids);
        tensors.put(name, t);
        return t;
    }

    @Test
    void shouldPlaceEachTensorAtAnAlignedSpanAndEachBlockAfterTheLast()
    {
        tensor("a0", 100, 30);
        tensor("b0", 10);
        tensor("a1", 100, 30);
        tensor("b1", 10);
        tensor("g", 7);
        final UnitLayout layout = UnitLayout.of(tensors::get, "m@1", new String[][]{{"a0", "b0"}, {"a1", "b1"}},
            new String[]{"g"}, 0, null);
        final UnitLayout.Unit l0 = layout.unit(0);
        assertArrayEquals(new long[]{0, 100, 192}, l0.offsets(), "b0 starts at 130 rounded up to 64");
        assertArrayEquals(new long[]{0, 130}, l0.spans().get("a0"));
        assertArrayEquals(new long[]{192, 10}, l0.spans().get("b0"));
        assertEquals(256, l0.bytes());
        assertEquals(64, layout.globals().bytes(), "at least one aligned line");
        assertEquals(2, layout.globals().index());
        assertEquals(64 + 256, layout.minimumBudget());
        assertEquals("layer 1", layout.describe(layout.unit(1)));
        assertEquals("the global tensors", layout.describe(layout.globals()));
    }

    @Test
    void shouldCutExpertUnitsFromExpertTensorsCutAtExpertBoundaries()
    {
        final String[][] expertNames = {WeightViews.expertTensorNames(0)};
        for (final String name : expertNames[0])
        {
            tensor(name, 64, 64, 64, 64); // two experts of two blocks each
        }
        tensor("core", 32);
        tensor("g", 8);
        assertTrue(UnitLayout.expertAligned(tensors::get, 1, 2));
        final UnitLayout layout = UnitLayout.of(tensors::get, "m@1", new String[][]{{"core"}}, new String[]{"g"}, 2,
            expertNames);
        final UnitLayout.Unit e1 = layout.expertUnit(0, 1);
        assertEquals(3, e1.index());
        assertEquals(1, e1.expert());
        final Manifest.Tensor gate = tensors.get(expertNames[0][0]);
        assertEquals(List.of(gate.blocks().get(2), gate.blocks().get(3)), e1.blocks().subList(0, 2),
            "expert 1's half of the gate tensor");
        assertArrayEquals(new long[]{0, 128}, e1.spans().get(expertNames[0][0]));
        assertArrayEquals(new long[]{256, 128}, e1.spans().get(expertNames[0][2]));
        assertEquals(384, e1.bytes());
        assertEquals(64 + 64 + 2 * 384, layout.minimumBudget(), "globals, the layer, and both experts of a layer");
        assertEquals("expert 1 of layer 0", layout.describe(e1));
    }

    @Test
    void shouldSeeABlockThatStraddlesTwoExperts()
    {
        for (final String name : WeightViews.expertTensorNames(0))
        {
            tensor(name, 96, 160); // experts of 128 bytes: the second block runs from expert 0 into expert 1
        }
        assertFalse(UnitLayout.expertAligned(tensors::get, 1, 2));
    }

    @Test
    void shouldNameAMissingTensor()
    {
        tensor("g", 8);
        assertEquals("m@1 has no tensor a0", assertThrows(IllegalArgumentException.class,
            () -> UnitLayout.of(tensors::get, "m@1", new String[][]{{"a0"}}, new String[]{"g"}, 0, null)).getMessage());
    }
}
