package dev.strata.compute.gguf;

/** Metadata value types of the GGUF format, with their on-disk ids. */
public enum GgufValueType
{
    UINT8(0, 1),
    INT8(1, 1),
    UINT16(2, 2),
    INT16(3, 2),
    UINT32(4, 4),
    INT32(5, 4),
    FLOAT32(6, 4),
    BOOL(7, 1),
    STRING(8, 8),
    ARRAY(9, 12),
    UINT64(10, 8),
    INT64(11, 8),
    FLOAT64(12, 8);

    private final int id;
    private final int minSize;

    GgufValueType(final int id, final int minSize)
    {
        this.id = id;
        this.minSize = minSize;
    }

    public int id()
    {
        return id;
    }

    /** Fewest bytes one value of this type takes on disk (used to reject absurd array counts early). */
    int minSize()
    {
        return minSize;
    }

    public static GgufValueType fromId(final int id)
    {
        for (final GgufValueType t : values())
        {
            if (t.id == id)
            {
                return t;
            }
        }
        return null;
    }
}
