package dev.strata.compute.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * e^x in float from additions, multiplications, fused multiply-adds and bit operations only, lane by lane the
 * same operations as {@link #scalar}. Every one of those is exactly rounded IEEE arithmetic in the interpreter and in
 * C2-compiled code alike, so the result does not depend on whether the JIT has compiled the caller yet. The Vector
 * API's {@code lanewise(EXP)} does: its C2 intrinsic and its Java fallback differ in the last bit (measured: 3 of
 * 1,024 SwiGLU outputs changed between a method's first call and its compiled calls), which made two runs of one
 * greedy request in fresh node processes give different text.
 * <p>
 * Method: n = round(x / ln 2) (with the 1.5 * 2^23 rounding trick), r = x - n ln 2 in two parts, e^r by a degree-6
 * polynomial on [-ln2/2, ln2/2], times 2^n built in the exponent bits. x is clamped to [-87.3, 88.7]: below, the
 * result is about 1.2e-38 (softmax and SiLU only need it small); above, +infinity. Error within 4 ulp of
 * {@link Math#exp} over that range (tested).
 */
public final class Exp
{
    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693145751953125f;
    private static final float LN2_LO = 1.42860682030941723212e-6f;
    private static final float ROUND = 12582912f; // 1.5 * 2^23
    private static final float MIN = -87.3f;
    private static final float MAX = 88.7f;
    private static final float C2 = 1f / 2;
    private static final float C3 = 1f / 6;
    private static final float C4 = 1f / 24;
    private static final float C5 = 1f / 120;
    private static final float C6 = 1f / 720;

    private Exp()
    {
    }

    /** e^x of every lane. */
    public static FloatVector of(final FloatVector v)
    {
        final jdk.incubator.vector.VectorSpecies<Float> sp = v.species();
        final FloatVector x = v.max(MIN).min(MAX);
        final FloatVector n = x.mul(LOG2E).add(ROUND).sub(ROUND);
        final FloatVector r = n.fma(FloatVector.broadcast(sp, -LN2_LO), n.fma(FloatVector.broadcast(sp, -LN2_HI), x));
        FloatVector p = r.fma(C6, C5);
        p = p.fma(r, FloatVector.broadcast(sp, C4));
        p = p.fma(r, FloatVector.broadcast(sp, C3));
        p = p.fma(r, FloatVector.broadcast(sp, C2));
        p = p.fma(r, FloatVector.broadcast(sp, 1f));
        p = p.fma(r, FloatVector.broadcast(sp, 1f));
        final IntVector bits = ((IntVector)n.convert(VectorOperators.F2I, 0)).add(127).lanewise(VectorOperators.LSHL, 23);
        return p.mul(bits.reinterpretAsFloats());
    }

    /** e^x, with the operations of {@link #of} on one value. */
    public static float scalar(final float v)
    {
        final float x = Math.min(Math.max(v, MIN), MAX);
        final float n = x * LOG2E + ROUND - ROUND;
        final float r = Math.fma(n, -LN2_LO, Math.fma(n, -LN2_HI, x));
        float p = Math.fma(r, C6, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        p = Math.fma(p, r, 1f);
        p = Math.fma(p, r, 1f);
        return p * Float.intBitsToFloat(((int)n + 127) << 23);
    }
}
