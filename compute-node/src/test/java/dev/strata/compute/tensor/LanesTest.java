package dev.strata.compute.tensor;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Lanes#sum}: the pairwise tree written out on an array, bit for bit, whether this JVM runs it interpreted
 * or compiled (the process-level check, C1 against C2, is {@code JitDeterminismProcessTest}); and within rounding
 * of the exact sum.
 */
class LanesTest
{
    private static final jdk.incubator.vector.VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    @Test
    void shouldAddTheLanesInTheTreeOrder()
    {
        final Random r = new Random(5);
        final float[] x = new float[F.length()];
        int orderMatters = 0;
        for (int i = 0; i < 100_000; i++)
        {
            for (int j = 0; j < x.length; j++)
            {
                // mixed magnitudes and signs: the order of the additions changes the rounding
                x[j] = (float)(r.nextGaussian() * Math.pow(10, r.nextInt(7) - 3));
            }
            final float got = Lanes.sum(FloatVector.fromArray(F, x, 0));
            assertEquals(Float.floatToRawIntBits(Lanes.sumScalar(x)), Float.floatToRawIntBits(got), "sum " + i);
            float sequential = 0f;
            double exact = 0;
            double magnitude = 0;
            for (final float v : x)
            {
                sequential += v;
                exact += v;
                magnitude += Math.abs(v);
            }
            orderMatters += sequential != got ? 1 : 0;
            assertTrue(Math.abs(got - exact) <= x.length * Math.ulp((float)magnitude), got + " vs " + exact);
        }
        // the cases are ones where the order shows: the lane-by-lane sum (the JDK fallback's order) often differs
        assertTrue(F.length() < 4 || orderMatters > 10_000, "order-sensitive cases: " + orderMatters);
    }
}
