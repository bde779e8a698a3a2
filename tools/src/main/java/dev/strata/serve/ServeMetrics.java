package dev.strata.serve;

import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.GenerationService;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Serving metrics per model version: time to first token, time per output token and end-to-end latency
 * (histograms), requests by finish reason, prompt and completion tokens, and the engine's queue, running batch,
 * KV blocks in use and prefix-cache hit rate (gauges).
 */
final class ServeMetrics
{
    private final MeterRegistry registry;
    private final Map<String, PerVersion> versions = new ConcurrentHashMap<>();

    private final class PerVersion
    {
        final Timer ttft;
        final Timer tpot;
        final Timer e2e;
        final Counter promptTokens;
        final Counter completionTokens;

        PerVersion(final ServedModel m)
        {
            final String v = m.id();
            ttft = Timer.builder("strata.serve.time_to_first_token").tag("version", v).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(120))
                .register(registry);
            tpot = Timer.builder("strata.serve.time_per_output_token").tag("version", v).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(10))
                .register(registry);
            e2e = Timer.builder("strata.serve.e2e_latency").tag("version", v).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(600))
                .register(registry);
            promptTokens = Counter.builder("strata.serve.prompt_tokens").tag("version", v).register(registry);
            completionTokens = Counter.builder("strata.serve.completion_tokens").tag("version", v).register(registry);
            final GenerationService e = m.engine();
            Gauge.builder("strata.serve.queue_length", e, x -> x.stats().waiting()).tag("version", v)
                .register(registry);
            Gauge.builder("strata.serve.running_batch", e, x -> x.stats().running()).tag("version", v)
                .register(registry);
            Gauge.builder("strata.serve.kv_blocks_used", e, x -> x.stats().kvBlocksInUse()).tag("version", v)
                .register(registry);
            Gauge.builder("strata.serve.kv_blocks", e, x -> x.stats().kvBlocks()).tag("version", v)
                .register(registry);
            Gauge.builder("strata.serve.prefix_cache_hit_rate", e, x -> x.stats().prefixHitRate()).tag("version", v)
                .register(registry);
        }
    }

    ServeMetrics(final MeterRegistry registry)
    {
        this.registry = registry;
    }

    void completed(final ServedModel m, final Completion c)
    {
        final PerVersion p = versions.computeIfAbsent(m.id(), k -> new PerVersion(m));
        Counter.builder("strata.serve.requests").tag("version", m.id())
            .tag("finish_reason", c.reason().name().toLowerCase(java.util.Locale.ROOT)).register(registry).increment();
        p.promptTokens.increment(c.promptTokens());
        p.completionTokens.increment(c.completionTokens());
        if (c.firstTokenNanos() > 0)
        {
            p.ttft.record(Duration.ofNanos(c.firstTokenNanos()));
            if (c.completionTokens() > 1)
            {
                p.tpot.record(Duration.ofNanos((c.totalNanos() - c.firstTokenNanos()) / (c.completionTokens() - 1)));
            }
        }
        p.e2e.record(Duration.ofNanos(c.totalNanos()));
    }

    void register(final ServedModel m)
    {
        versions.computeIfAbsent(m.id(), k -> new PerVersion(m));
    }
}
