package dev.strata.compute.tensor;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Shared Vector API species and small helpers for the kernels. */
final class Vectors
{
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int LANES = F.length();
    /** 32 bytes: one Q8_0 block, or one 32-element sub-block of a K-quant. */
    static final VectorSpecies<Byte> B256 = ByteVector.SPECIES_256;
    /**
     * As many bytes as F has lanes: the bytes that widen to one float vector. Loading each such group with its own
     * load and converting its part 0 beats converting parts 1.. of a wider byte vector (a shuffle per part):
     * measured on one core, Q8_0 dequantize 4.3 to 5.9 Gweights/s, Q8_0 dot 9.5 to 10.6 (best of 8, 3 runs each).
     */
    static final VectorSpecies<Byte> BQ = VectorSpecies.of(byte.class, jdk.incubator.vector.VectorShape.forBitSize(Math.max(64, LANES * 8)));
    /** 16 bytes: the packed nibbles of one Q4_0 block. */
    static final VectorSpecies<Byte> B128 = ByteVector.SPECIES_128;
    /** As many shorts as F has lanes (for F16/BF16 conversion). */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, jdk.incubator.vector.VectorShape.forBitSize(LANES * 16));
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /** Whether the vector kernels can run (a float vector of 8 or 16 lanes); otherwise scalar code is used. */
    static final boolean VECTOR_OK = (LANES == 8 || LANES == 16) && I.length() == LANES;
    /** How many float vectors one 32-byte block expands to. */
    static final int PARTS_32 = 32 / Math.max(1, LANES);
    /** 2^112: rescales an f16 exponent field moved into f32 position (handles subnormals too). */
    private static final float F16_MAGIC = Float.intBitsToFloat(0x77800000);

    private Vectors()
    {
    }

    /**
     * Shifts every byte right by {@code n} bits, with garbage from the neighbouring byte in the top {@code n}
     * bits: callers mask the result. x86 has no byte shift, so a byte-lane shift compiles to several
     * widen/shift/narrow instructions; a shift of the same bits as 32-bit lanes is one instruction (measured:
     * the Q4_0 kernel went from 10 to 15 Gweights/s per core).
     */
    static ByteVector shiftRightBytes(final ByteVector v, final int n)
    {
        return v.reinterpretAsInts().lanewise(VectorOperators.LSHR, n).reinterpretAsBytes();
    }

    /**
     * Shifts every byte left by {@code n} bits, with the top {@code n} bits of each byte landing in the next byte:
     * correct where no set bit crosses a byte boundary, or where the caller masks the crossed bits away.
     */
    static ByteVector shiftLeftBytes(final ByteVector v, final int n)
    {
        return v.reinterpretAsInts().lanewise(VectorOperators.LSHL, n).reinterpretAsBytes();
    }

    /**
     * Converts {@code LANES} IEEE half floats to floats (no inf/NaN handling: weights hold none). The halves are
     * sign-extended to 32 bits, so after a shift by 13 the sign is already in bit 31 and exponent and mantissa in
     * bits 27..13: one mask keeps both, and a multiply by 2^112 rebiases the exponent (subnormals included), with
     * the sign carried through. Four operations per vector; the JDK's Vector API has no half-float conversion.
     */
    static FloatVector halfToFloat(final ShortVector h)
    {
        return ((IntVector)h.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 13)
            .and(0x8FFF_E000).reinterpretAsFloats().mul(F16_MAGIC);
    }

    /** Converts {@code LANES} bfloat16 values to floats. */
    static FloatVector bf16ToFloat(final ShortVector h)
    {
        final IntVector bits = (IntVector)h.convertShape(VectorOperators.S2I, I, 0);
        return bits.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }
}
