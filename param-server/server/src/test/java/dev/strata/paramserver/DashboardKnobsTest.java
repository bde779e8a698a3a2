package dev.strata.paramserver;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Knob changes: validated whole, applied together, one event per knob that moved. */
class DashboardKnobsTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private final List<String> applied = new ArrayList<>();
    private final DashboardKnobs knobs = new DashboardKnobs(0, 1L << 30, 16L << 30, "cost",
        new DashboardKnobs.ServiceKnobs()
        {
            @Override
            public void linkBytesPerSecond(final long bytes)
            {
                applied.add("link=" + bytes);
            }

            @Override
            public void memoryBudgetBytes(final long bytes)
            {
                applied.add("memory=" + bytes);
            }

            @Override
            public void ssdBudgetBytes(final long bytes)
            {
                applied.add("ssd=" + bytes);
            }

            @Override
            public void evictionPolicy(final String name)
            {
                applied.add("policy=" + name);
            }
        });

    @Test
    void shouldApplyNothingWhenOneValueIsBad() throws Exception
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> knobs.change(
            JSON.readTree("{\"link_bytes_per_second\": 2000000, \"lookahead\": 3, \"ssd_budget_bytes\": -1}"), "t", 1));
        assertEquals("invalid ssd_budget_bytes=-1 (67108864..9223372036854775807)", ex.getMessage());
        assertEquals(List.of(), applied);
        assertEquals(0, knobs.generation());
        assertEquals(0, knobs.settings().lookahead());
        assertEquals(List.of(), knobs.events());
    }

    @Test
    void shouldRecordOneEventPerKnobThatMovedAndBumpTheNodesGenerationOnce() throws Exception
    {
        final var events = knobs.change(JSON.readTree("{\"link_bytes_per_second\": 2000000, \"lookahead\": 3, " +
            "\"predictor\": \"none\", \"eviction_policy\": \"cost\"}"), "t", 42);
        assertEquals(List.of("lookahead", "predictor", "link_bytes_per_second"),
            events.stream().map(DashboardKnobs.Event::knob).toList(), "the policy did not move");
        assertEquals(List.of("link=2000000"), applied);
        assertEquals(1, knobs.generation());
        assertEquals(42, events.getFirst().atMillis());
        knobs.change(JSON.readTree("{\"lookahead\": 3}"), "t", 43);
        assertEquals(1, knobs.generation(), "no change, no push");
        assertEquals(3, knobs.changes());
        assertThrows(IllegalArgumentException.class, () -> knobs.change(JSON.readTree("{\"lookahead\": 2.5}"), "t", 44));
        assertThrows(IllegalArgumentException.class, () -> knobs.change(JSON.readTree("{\"colour\": 1}"), "t", 44));
        assertThrows(IllegalArgumentException.class, () -> knobs.change(JSON.readTree("[]"), "t", 44));
    }
}
