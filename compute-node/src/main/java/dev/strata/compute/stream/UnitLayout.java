package dev.strata.compute.stream;

import dev.strata.compute.model.ModelConfig;
import dev.strata.compute.model.WeightViews;
import dev.strata.paramclient.Manifest;
import dev.strata.transport.BlockId;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * How a pinned version's tensors are cut into units, the node's unit of caching: one unit per layer (attention,
 * norms, router, and the experts unless they are streamed one by one), one for the global tensors (embedding,
 * final norm, classifier) at index {@code layers}, and, for a mixture of experts cut at expert boundaries, one
 * per (layer, expert) from index {@code layers + 1}. A unit is one buffer: each block has its offset in it, and
 * each tensor its span, aligned to 64 bytes. Immutable; derived from the manifest alone.
 */
final class UnitLayout
{
    static final long ALIGN = 64;

    /**
     * One unit.
     *
     * @param index   its number (see the class comment).
     * @param layerOf the layer it belongs to ({@code layers} for the globals).
     * @param expert  the expert, or -1.
     * @param blocks  the blocks to fetch, in order.
     * @param offsets where each block lands in the unit's buffer.
     * @param spans   per tensor name, {@code {offset, length}} in the buffer.
     * @param bytes   the buffer's size.
     */
    record Unit(int index, int layerOf, int expert, List<BlockId> blocks, long[] offsets, Map<String, long[]> spans,
        long bytes)
    {
    }

    private final int layers;
    private final int experts;
    private final Unit[] units;

    private UnitLayout(final int layers, final int experts, final Unit[] units)
    {
        this.layers = layers;
        this.experts = experts;
        this.units = units;
    }

    /** The layout of {@code model}'s version: expert units when its expert tensors are cut at expert boundaries. */
    static UnitLayout of(final RemoteModel model)
    {
        final ModelConfig config = model.config();
        final int layers = config.layers();
        final String[][] layerNames = new String[layers][];
        final String[][] expertNames = new String[layers][];
        final boolean expertUnits = config.moe() && expertAligned(model::tensor, layers, config.experts());
        for (int l = 0; l < layers; l++)
        {
            layerNames[l] = WeightViews.layerTensorNames(config, l, !expertUnits);
            expertNames[l] = WeightViews.expertTensorNames(l);
        }
        return of(model::tensor, model.pinned(), layerNames,
            WeightViews.globalTensorNames(model.tensor("output.weight") != null), expertUnits ? config.experts() : 0,
            expertNames);
    }

    /**
     * A layout from tensor names.
     *
     * @param tensors     a tensor of the version by name, or null.
     * @param pinned      {@code model@number}, for errors.
     * @param layerNames  per layer, the tensors of its unit.
     * @param globalNames the tensors of the globals' unit.
     * @param experts     experts per layer to stream one by one, or 0.
     * @param expertNames per layer, the three expert tensors (gate, up, down) when {@code experts > 0}.
     * @throws IllegalArgumentException naming a tensor the version lacks.
     */
    static UnitLayout of(final Function<String, Manifest.Tensor> tensors, final String pinned,
        final String[][] layerNames, final String[] globalNames, final int experts, final String[][] expertNames)
    {
        final int layers = layerNames.length;
        final Unit[] units = new Unit[layers + 1 + layers * experts];
        for (int l = 0; l < layers; l++)
        {
            units[l] = whole(tensors, pinned, l, l, layerNames[l]);
        }
        units[layers] = whole(tensors, pinned, layers, layers, globalNames);
        for (int l = 0; l < layers && experts > 0; l++)
        {
            for (int e = 0; e < experts; e++)
            {
                units[layers + 1 + l * experts + e] = expert(tensors, layers + 1 + l * experts + e, l, e, experts,
                    expertNames[l]);
            }
        }
        return new UnitLayout(layers, experts, units);
    }

    /** A unit of whole tensors, one after the other. */
    private static Unit whole(final Function<String, Manifest.Tensor> tensors, final String pinned, final int index,
        final int layerOf, final String[] names)
    {
        final List<BlockId> blocks = new ArrayList<>();
        final List<Long> offsets = new ArrayList<>();
        final Map<String, long[]> spans = new HashMap<>();
        long offset = 0;
        for (final String name : names)
        {
            final Manifest.Tensor t = tensors.apply(name);
            if (t == null)
            {
                throw new IllegalArgumentException(pinned + " has no tensor " + name);
            }
            spans.put(name, new long[]{offset, t.byteSize()});
            long at = offset;
            for (final BlockId id : t.blocks())
            {
                blocks.add(id);
                offsets.add(at);
                at += id.length();
            }
            offset = align(at);
        }
        return new Unit(index, layerOf, -1, List.copyOf(blocks), toArray(offsets), Map.copyOf(spans),
            Math.max(ALIGN, offset));
    }

    /** An expert unit: the slices of expert {@code e} in the expert tensors of layer {@code l}. */
    private static Unit expert(final Function<String, Manifest.Tensor> tensors, final int index, final int l,
        final int e, final int experts, final String[] names)
    {
        final List<BlockId> blocks = new ArrayList<>();
        final List<Long> offsets = new ArrayList<>();
        final Map<String, long[]> spans = new HashMap<>();
        long offset = 0;
        for (final String name : names)
        {
            final Manifest.Tensor t = tensors.apply(name);
            final long per = t.byteSize() / experts;
            final long from = e * per;
            long at = 0;
            for (final BlockId id : t.blocks())
            {
                if (at >= from && at < from + per)
                {
                    blocks.add(id);
                    offsets.add(offset + at - from);
                }
                at += id.length();
            }
            spans.put(name, new long[]{offset, per});
            offset = align(offset + per);
        }
        return new Unit(index, l, e, List.copyOf(blocks), toArray(offsets), Map.copyOf(spans), Math.max(ALIGN, offset));
    }

    /** Whether every expert tensor's blocks start and end at expert boundaries (so experts can be fetched alone). */
    static boolean expertAligned(final Function<String, Manifest.Tensor> tensors, final int layers, final int experts)
    {
        for (int l = 0; l < layers; l++)
        {
            for (final String name : WeightViews.expertTensorNames(l))
            {
                final Manifest.Tensor t = tensors.apply(name);
                if (t == null)
                {
                    return false;
                }
                final long per = t.byteSize() / experts;
                long at = 0;
                for (final BlockId id : t.blocks())
                {
                    final long end = at + id.length();
                    if (at / per != (end - 1) / per)
                    {
                        return false; // this block straddles two experts
                    }
                    at = end;
                }
            }
        }
        return true;
    }

    private static long align(final long at)
    {
        return (at + ALIGN - 1) / ALIGN * ALIGN;
    }

    private static long[] toArray(final List<Long> values)
    {
        final long[] a = new long[values.size()];
        for (int i = 0; i < a.length; i++)
        {
            a[i] = values.get(i);
        }
        return a;
    }

    int layers()
    {
        return layers;
    }

    /** Experts per layer streamed one by one, or 0. */
    int experts()
    {
        return experts;
    }

    int size()
    {
        return units.length;
    }

    Unit unit(final int index)
    {
        return units[index];
    }

    Unit globals()
    {
        return units[layers];
    }

    Unit expertUnit(final int layer, final int expert)
    {
        return units[layers + 1 + layer * experts + expert];
    }

    /**
     * The least workable budget: the globals, plus the largest layer, plus (streaming experts) every expert of a
     * layer, since one batch may route to all of them at once.
     */
    long minimumBudget()
    {
        return units[layers].bytes() + largestLayer() + (long)experts * largestExpert();
    }

    long largestLayer()
    {
        long largest = 0;
        for (int l = 0; l < layers; l++)
        {
            largest = Math.max(largest, units[l].bytes());
        }
        return largest;
    }

    long largestExpert()
    {
        long largest = 0;
        for (int i = layers + 1; i < units.length; i++)
        {
            largest = Math.max(largest, units[i].bytes());
        }
        return largest;
    }

    /** What a unit is, for errors: "layer 3", "expert 2 of layer 3", "the global tensors". */
    String describe(final Unit u)
    {
        return u.expert() >= 0 ? "expert " + u.expert() + " of layer " + u.layerOf() :
            u.index() == layers ? "the global tensors" : "layer " + u.index();
    }
}
