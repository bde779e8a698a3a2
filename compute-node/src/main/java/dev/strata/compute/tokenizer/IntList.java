package dev.strata.compute.tokenizer;

import java.util.Arrays;

/** A growable list of primitive ints, to collect token ids and split lengths without boxing. */
final class IntList
{
    private int[] values;
    private int size;

    IntList()
    {
        this(16);
    }

    IntList(final int capacity)
    {
        values = new int[Math.max(4, capacity)];
    }

    void add(final int value)
    {
        if (size == values.length)
        {
            values = Arrays.copyOf(values, values.length * 2);
        }
        values[size++] = value;
    }

    int get(final int index)
    {
        return values[index];
    }

    int size()
    {
        return size;
    }

    int[] toArray()
    {
        return Arrays.copyOf(values, size);
    }
}
