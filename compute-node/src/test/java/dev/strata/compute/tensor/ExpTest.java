package dev.strata.compute.tensor;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Exp}: close to {@link Math#exp}, and every vector lane bit-identical to the scalar form, which uses only
 * exactly rounded operations: so the value cannot depend on whether the JIT compiled the code (the Vector API's own
 * EXP fails this equality).
 */
class ExpTest
{
    private static final jdk.incubator.vector.VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    @Test
    void shouldBeWithinFourUlpOfMathExpOverTheRangeThatMatters()
    {
        final Random r = new Random(3);
        for (int i = 0; i < 200_000; i++)
        {
            final float x = -87f + 175f * r.nextFloat();
            final double exact = Math.exp(x);
            final float got = Exp.scalar(x);
            assertTrue(Math.abs(got - exact) <= 4 * Math.ulp((float)exact), x + ": " + got + " vs " + exact);
        }
        assertEquals(1f, Exp.scalar(0f));
        assertTrue(Exp.scalar(Float.NEGATIVE_INFINITY) < 1.3e-38f, "masked scores weigh (almost) nothing");
        assertEquals(Float.POSITIVE_INFINITY, Exp.scalar(1000f));
    }

    @Test
    void shouldGiveEveryLaneTheScalarBits()
    {
        final Random r = new Random(4);
        final float[] x = new float[F.length()];
        final float[] y = new float[F.length()];
        for (int round = 0; round < 50_000; round++)
        {
            for (int i = 0; i < x.length; i++)
            {
                x[i] = round % 7 == 0 ? -1e4f + 2e4f * r.nextFloat() : -90f + 180f * r.nextFloat();
            }
            Exp.of(FloatVector.fromArray(F, x, 0)).intoArray(y, 0);
            for (int i = 0; i < x.length; i++)
            {
                assertEquals(Float.floatToRawIntBits(Exp.scalar(x[i])), Float.floatToRawIntBits(y[i]),
                    "lane " + i + " of exp(" + x[i] + ")");
            }
        }
    }
}
