package dev.strata.compute.sampling;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

class SamplerConfigTest
{
    @Test
    void defaultsMatchLlamaCpp()
    {
        final SamplerConfig c = SamplerConfig.defaults(7L);
        assertEquals(0.8f, c.temperature());
        assertEquals(40, c.topK());
        assertEquals(0.95f, c.topP());
        assertEquals(0.05f, c.minP());
        assertEquals(1.0f, c.repeatPenalty());
        assertEquals(64, c.repeatLastN());
        assertEquals(7L, c.seed());
        assertFalse(c.isGreedy());
    }

    @Test
    void greedyFactory()
    {
        final SamplerConfig c = SamplerConfig.greedy();
        assertTrue(c.isGreedy());
        assertEquals(0.0f, c.temperature());
        assertEquals(1.0f, c.repeatPenalty());
    }

    @Test
    void withersReplaceOneField()
    {
        final SamplerConfig c = SamplerConfig.defaults(1L).withTopK(5).withTopP(0.5f).withMinP(0.0f)
            .withTemperature(1.5f).withRepeatPenalty(1.1f, 32).withSeed(9L);
        assertEquals(new SamplerConfig(1.5f, 5, 0.5f, 0.0f, 1.1f, 32, 9L), c);
    }

    @Test
    void boundaryValuesAreAcceptedAndKeptAsGiven()
    {
        final SamplerConfig low = new SamplerConfig(0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0L);
        assertEquals(0.0f, low.temperature());
        assertEquals(0, low.topK());
        assertEquals(1.0f, low.topP());
        assertEquals(0.0f, low.minP());
        assertEquals(0, low.repeatLastN());
        assertTrue(low.isGreedy(), "temperature 0 is greedy");
        final SamplerConfig high = new SamplerConfig(100.0f, 1, Float.MIN_VALUE, 1.0f, 0.01f, 4096, -1L);
        assertEquals(100.0f, high.temperature());
        assertEquals(1, high.topK());
        assertEquals(Float.MIN_VALUE, high.topP());
        assertEquals(1.0f, high.minP());
        assertEquals(0.01f, high.repeatPenalty());
        assertEquals(4096, high.repeatLastN());
        assertEquals(-1L, high.seed());
        assertFalse(high.isGreedy());
    }

    @Test
    void badValuesAreRejectedWithTheParameterName()
    {
        rejects("temperature", () -> new SamplerConfig(-0.1f, 40, 0.95f, 0.05f, 1.0f, 64, 0L));
        rejects("temperature", () -> new SamplerConfig(Float.NaN, 40, 0.95f, 0.05f, 1.0f, 64, 0L));
        rejects("temperature", () -> new SamplerConfig(Float.POSITIVE_INFINITY, 40, 0.95f, 0.05f, 1.0f, 64, 0L));
        rejects("topK", () -> new SamplerConfig(0.8f, -1, 0.95f, 0.05f, 1.0f, 64, 0L));
        rejects("topP", () -> new SamplerConfig(0.8f, 40, 0.0f, 0.05f, 1.0f, 64, 0L));
        rejects("topP", () -> new SamplerConfig(0.8f, 40, 1.01f, 0.05f, 1.0f, 64, 0L));
        rejects("topP", () -> new SamplerConfig(0.8f, 40, Float.NaN, 0.05f, 1.0f, 64, 0L));
        rejects("minP", () -> new SamplerConfig(0.8f, 40, 0.95f, -0.01f, 1.0f, 64, 0L));
        rejects("minP", () -> new SamplerConfig(0.8f, 40, 0.95f, 1.5f, 1.0f, 64, 0L));
        rejects("repeatPenalty", () -> new SamplerConfig(0.8f, 40, 0.95f, 0.05f, 0.0f, 64, 0L));
        rejects("repeatPenalty", () -> new SamplerConfig(0.8f, 40, 0.95f, 0.05f, -1.0f, 64, 0L));
        rejects("repeatPenalty", () -> new SamplerConfig(0.8f, 40, 0.95f, 0.05f, Float.NaN, 64, 0L));
        rejects("repeatLastN", () -> new SamplerConfig(0.8f, 40, 0.95f, 0.05f, 1.1f, -1, 0L));
        rejects("topK", () -> SamplerConfig.greedy().withTopK(-5));
    }

    private static void rejects(final String parameter, final Executable construction)
    {
        final IllegalArgumentException e = assertThrows(IllegalArgumentException.class, construction);
        assertTrue(e.getMessage().startsWith(parameter + " must"), e.getMessage());
    }
}
