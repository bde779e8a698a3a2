package dev.strata.paramserver;

import com.fasterxml.jackson.databind.JsonNode;
import dev.strata.prefetch.PrefetchSettings;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The knobs an operator turns from the dashboard or the admin API: the nodes' prefetch settings (look-ahead,
 * predictor, node memory budget; pushed to every reporting node), the block server's bandwidth cap, and the
 * service's memory and SSD budgets and memory eviction policy. A change is
 * validated whole before anything is applied (a bad value refuses the whole change, naming the value), logged, and
 * kept as an event the plots draw as a marker. Thread-safe.
 */
final class DashboardKnobs
{
    private static final System.Logger LOG = System.getLogger(DashboardKnobs.class.getName());
    /** Events kept (markers). */
    private static final int MAX_EVENTS = 1000;

    /** Where the service's own knobs act (the tiers and the block server). */
    interface ServiceKnobs
    {
        void linkBytesPerSecond(long bytes);

        void memoryBudgetBytes(long bytes);

        void ssdBudgetBytes(long bytes);

        void evictionPolicy(String name);
    }

    /** The least a tier budget may be: the largest block. */
    private static final long MIN_TIER_BUDGET = ParamService.MAX_BLOCK_BYTES;

    /** One change of one knob, at {@code atMillis}, from a client address. */
    record Event(long atMillis, String knob, String from, String to, String by)
    {
    }

    private final ServiceKnobs service;
    private PrefetchSettings settings = PrefetchSettings.DEFAULTS;
    private long generation;
    private long linkBytesPerSecond;
    private long memoryBudgetBytes;
    private long ssdBudgetBytes;
    private String evictionPolicy;
    private final List<Event> events = new ArrayList<>();
    private long changes;

    /** The service's knobs start at what it was launched with. */
    DashboardKnobs(final long linkBytesPerSecond, final long memoryBudgetBytes, final long ssdBudgetBytes,
        final String evictionPolicy, final ServiceKnobs service)
    {
        this.linkBytesPerSecond = linkBytesPerSecond;
        this.memoryBudgetBytes = memoryBudgetBytes;
        this.ssdBudgetBytes = ssdBudgetBytes;
        this.evictionPolicy = evictionPolicy;
        this.service = service;
    }

    synchronized PrefetchSettings settings()
    {
        return settings;
    }

    /** Increases with every change of the nodes' settings; nodes report the generation they run. */
    synchronized long generation()
    {
        return generation;
    }

    synchronized long linkBytesPerSecond()
    {
        return linkBytesPerSecond;
    }

    /** Knob changes since the service started (for an annotation query in Grafana). */
    synchronized long changes()
    {
        return changes;
    }

    synchronized List<Event> events()
    {
        return List.copyOf(events);
    }

    /** The knobs as the API shows them. */
    synchronized Map<String, Object> describe()
    {
        final Map<String, Object> m = new LinkedHashMap<>();
        m.put("generation", generation);
        m.put("lookahead", settings.lookahead());
        m.put("predictor", settings.predictor().label());
        m.put("node_budget_bytes", settings.nodeBudgetBytes());
        m.put("link_bytes_per_second", linkBytesPerSecond);
        m.put("memory_budget_bytes", memoryBudgetBytes);
        m.put("ssd_budget_bytes", ssdBudgetBytes);
        m.put("eviction_policy", evictionPolicy);
        return m;
    }

    /**
     * Applies a change: a JSON object with any of {@code lookahead} (0 adaptive, 1..64), {@code predictor}
     * ({@code learned}, {@code layer-order}, {@code none}), {@code node_budget_bytes} (0: each node's own, else at
     * least 64 MiB), {@code link_bytes_per_second} (0: no cap, else at least 1 MB/s), {@code memory_budget_bytes} and
     * {@code ssd_budget_bytes} of the service (at least the largest block, 64 MiB), {@code eviction_policy} of its
     * memory tier ({@code lru}, {@code lfu}, {@code cost}).
     *
     * @return the events it produced (empty when nothing changed).
     * @throws IllegalArgumentException naming the first bad value or unknown knob; nothing is applied then.
     */
    synchronized List<Event> change(final JsonNode body, final String by, final long nowMillis)
    {
        if (body == null || !body.isObject() || body.isEmpty())
        {
            throw new IllegalArgumentException("a change is a JSON object of knobs: " + KNOBS);
        }
        PrefetchSettings next = settings;
        long link = linkBytesPerSecond;
        long memory = memoryBudgetBytes;
        long ssd = ssdBudgetBytes;
        String policy = evictionPolicy;
        for (final Iterator<Map.Entry<String, JsonNode>> it = body.fields(); it.hasNext(); )
        {
            final Map.Entry<String, JsonNode> e = it.next();
            final JsonNode v = e.getValue();
            switch (e.getKey())
            {
                case "lookahead" -> next = next.withLookahead((int)integer(e.getKey(), v, 0, PrefetchSettings.MAX_LOOKAHEAD));
                case "predictor" ->
                {
                    if (!v.isTextual())
                    {
                        throw new IllegalArgumentException("invalid predictor=" + v + " (learned, layer-order or none)");
                    }
                    next = next.withPredictor(PrefetchSettings.Kind.parse(v.asText()));
                }
                case "node_budget_bytes" ->
                {
                    final long b = integer(e.getKey(), v, 0, Long.MAX_VALUE);
                    if (b != 0 && b < 64L << 20)
                    {
                        throw new IllegalArgumentException("invalid node_budget_bytes=" + b +
                            " (0 for each node's own, or at least 67108864)");
                    }
                    next = next.withNodeBudgetBytes(b);
                }
                case "link_bytes_per_second" ->
                {
                    final long b = integer(e.getKey(), v, 0, Long.MAX_VALUE);
                    if (b != 0 && b < 1_000_000)
                    {
                        throw new IllegalArgumentException("invalid link_bytes_per_second=" + b +
                            " (0 for no cap, or at least 1000000)");
                    }
                    link = b;
                }
                case "memory_budget_bytes" -> memory = integer(e.getKey(), v, MIN_TIER_BUDGET, Long.MAX_VALUE);
                case "ssd_budget_bytes" -> ssd = integer(e.getKey(), v, MIN_TIER_BUDGET, Long.MAX_VALUE);
                case "eviction_policy" ->
                {
                    if (!v.isTextual() || !List.of("lru", "lfu", "cost").contains(v.asText()))
                    {
                        throw new IllegalArgumentException("invalid eviction_policy=" + v + " (lru, lfu or cost)");
                    }
                    policy = v.asText();
                }
                default -> throw new IllegalArgumentException("unknown knob '" + e.getKey() + "' (" + KNOBS + ")");
            }
        }
        final List<Event> made = new ArrayList<>();
        if (next.lookahead() != settings.lookahead())
        {
            made.add(new Event(nowMillis, "lookahead", lookahead(settings.lookahead()), lookahead(next.lookahead()), by));
        }
        if (next.predictor() != settings.predictor())
        {
            made.add(new Event(nowMillis, "predictor", settings.predictor().label(), next.predictor().label(), by));
        }
        if (next.nodeBudgetBytes() != settings.nodeBudgetBytes())
        {
            made.add(new Event(nowMillis, "node_budget_bytes", Long.toString(settings.nodeBudgetBytes()),
                Long.toString(next.nodeBudgetBytes()), by));
        }
        if (link != linkBytesPerSecond)
        {
            made.add(new Event(nowMillis, "link_bytes_per_second", Long.toString(linkBytesPerSecond),
                Long.toString(link), by));
            service.linkBytesPerSecond(link);
            linkBytesPerSecond = link;
        }
        if (memory != memoryBudgetBytes)
        {
            made.add(new Event(nowMillis, "memory_budget_bytes", Long.toString(memoryBudgetBytes), Long.toString(memory),
                by));
            service.memoryBudgetBytes(memory);
            memoryBudgetBytes = memory;
        }
        if (ssd != ssdBudgetBytes)
        {
            made.add(new Event(nowMillis, "ssd_budget_bytes", Long.toString(ssdBudgetBytes), Long.toString(ssd), by));
            service.ssdBudgetBytes(ssd);
            ssdBudgetBytes = ssd;
        }
        if (!policy.equals(evictionPolicy))
        {
            made.add(new Event(nowMillis, "eviction_policy", evictionPolicy, policy, by));
            service.evictionPolicy(policy);
            evictionPolicy = policy;
        }
        if (!next.equals(settings))
        {
            settings = next;
            generation++;
        }
        changes += made.size();
        for (final Event ev : made)
        {
            LOG.log(System.Logger.Level.INFO, "knob " + ev.knob() + ": " + ev.from() + " -> " + ev.to() + " by " + by);
            events.add(ev);
        }
        while (events.size() > MAX_EVENTS)
        {
            events.removeFirst();
        }
        return made;
    }

    private static final String KNOBS = "lookahead, predictor, node_budget_bytes, link_bytes_per_second, " +
        "memory_budget_bytes, ssd_budget_bytes, eviction_policy";

    private static String lookahead(final int depth)
    {
        return depth == 0 ? "adaptive" : Integer.toString(depth);
    }

    private static long integer(final String name, final JsonNode v, final long min, final long max)
    {
        if (v == null || !v.canConvertToLong() || !v.isIntegralNumber())
        {
            throw new IllegalArgumentException("invalid " + name + "=" + v + " (an integer)");
        }
        final long n = v.asLong();
        if (n < min || n > max)
        {
            throw new IllegalArgumentException("invalid " + name + "=" + n + " (" + min + ".." + max + ")");
        }
        return n;
    }
}
