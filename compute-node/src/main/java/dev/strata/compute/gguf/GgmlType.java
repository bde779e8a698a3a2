package dev.strata.compute.gguf;

/**
 * The ggml tensor element types that a GGUF file may name, with their block geometry.
 * <p>
 * A quantized type stores {@link #blockSize()} elements in {@link #typeSize()} bytes. Types that Strata can
 * compute with are marked {@link #supported()}; the others are known by name so that errors can say which
 * type a file uses.
 */
public enum GgmlType
{
    F32(0, 1, 4, true),
    F16(1, 1, 2, true),
    Q4_0(2, 32, 2 + 16, true),
    Q4_1(3, 32, 2 + 2 + 16, false),
    Q5_0(6, 32, 2 + 4 + 16, false),
    Q5_1(7, 32, 2 + 2 + 4 + 16, false),
    Q8_0(8, 32, 2 + 32, true),
    Q8_1(9, 32, 4 + 32, false),
    Q2_K(10, 256, 2 + 2 + 16 + 64, false),
    Q3_K(11, 256, 2 + 12 + 32 + 64, false),
    Q4_K(12, 256, 2 + 2 + 12 + 128, true),
    Q5_K(13, 256, 2 + 2 + 12 + 32 + 128, false),
    Q6_K(14, 256, 128 + 64 + 16 + 2, true),
    Q8_K(15, 256, 4 + 256 + 32, false),
    I8(24, 1, 1, false),
    I16(25, 1, 2, false),
    I32(26, 1, 4, false),
    I64(27, 1, 8, false),
    F64(28, 1, 8, false),
    BF16(30, 1, 2, true);

    private static final GgmlType[] BY_ID = new GgmlType[64];

    static
    {
        for (final GgmlType type : values())
        {
            BY_ID[type.id] = type;
        }
    }

    private final int id;
    private final int blockSize;
    private final int typeSize;
    private final boolean supported;

    GgmlType(final int id, final int blockSize, final int typeSize, final boolean supported)
    {
        this.id = id;
        this.blockSize = blockSize;
        this.typeSize = typeSize;
        this.supported = supported;
    }

    /**
     * @param id the numeric type id from a GGUF tensor info.
     * @return the type, or {@code null} if the id is unknown.
     */
    public static GgmlType fromId(final int id)
    {
        return id >= 0 && id < BY_ID.length ? BY_ID[id] : null;
    }

    public int id()
    {
        return id;
    }

    /** Elements per quantization block (1 for plain types). */
    public int blockSize()
    {
        return blockSize;
    }

    /** Bytes per quantization block. */
    public int typeSize()
    {
        return typeSize;
    }

    /** Whether Strata has kernels for this type. */
    public boolean supported()
    {
        return supported;
    }

    /**
     * Bytes needed for {@code elements} elements of this type.
     *
     * @throws IllegalArgumentException if {@code elements} is not a whole number of blocks.
     */
    public long byteSize(final long elements)
    {
        if (elements % blockSize != 0)
        {
            throw new IllegalArgumentException(
                name() + " needs a multiple of " + blockSize + " elements, got " + elements);
        }
        return Math.multiplyExact(elements / blockSize, (long)typeSize);
    }
}
