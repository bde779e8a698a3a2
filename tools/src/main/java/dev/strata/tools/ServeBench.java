package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * {@code strata bench serve}: a load generator for any OpenAI-compatible server (strata serve, llama.cpp's
 * llama-server, vLLM), in the spirit of vLLM's {@code bench serve}: N streamed {@code /v1/completions} requests
 * arriving as a Poisson process ({@code --request-rate}) or kept at a fixed concurrency, with prompts of random
 * token ids (sent as token arrays, so their length is exact whatever the server's tokenizer) or from a ShareGPT
 * file, and {@code ignore_eos} so each output has its drawn length. Reports TTFT, TPOT, ITL and end-to-end latency
 * (mean, P50, P90, P99), request and token throughput, goodput under the SLOs, and the inter-token gaps by the
 * number of requests decoding at once, with the TPOT spread that their mix alone explains ({@link DecodeMix}).
 */
@Command(name = "serve", description = "Load an OpenAI-compatible server with streamed completions and report " +
    "TTFT, TPOT, ITL, latency, throughput and goodput.")
final class ServeBench implements Callable<Integer>
{
    private static final ObjectMapper JSON = new ObjectMapper();

    @Spec
    CommandSpec spec;

    @Option(names = "--url", defaultValue = "http://127.0.0.1:8080/v1", description = "Base URL of the API " +
        "(default: ${DEFAULT-VALUE}).")
    String url;

    @Option(names = "--model", required = true, description = "Model id to request.")
    String model;

    @Option(names = "--api-key", description = "Bearer key (default: $STRATA_API_KEY).")
    String apiKey;

    @Option(names = "--num-prompts", defaultValue = "200", description = "Requests (default: ${DEFAULT-VALUE}).")
    int numPrompts;

    @Option(names = "--request-rate", defaultValue = "inf", description = "Requests per second, Poisson arrivals " +
        "(default: ${DEFAULT-VALUE}: all at once).")
    String requestRate;

    @Option(names = "--max-concurrency", defaultValue = "0", description = "Most requests in flight (0: no limit).")
    int maxConcurrency;

    @Option(names = "--prompt-len", defaultValue = "256", description = "Prompt tokens (default: ${DEFAULT-VALUE}).")
    int promptLen;

    @Option(names = "--prompt-len-range", defaultValue = "0", description = "Prompt length drawn uniformly in " +
        "len ± range.")
    int promptRange;

    @Option(names = "--long-prompt-len", defaultValue = "0", description = "Interference: every --long-every-th " +
        "request has a prompt of this many tokens instead (0: none).")
    int longPromptLen;

    @Option(names = "--long-every", defaultValue = "8", description = "Which requests get the long prompt " +
        "(default: every ${DEFAULT-VALUE}th).")
    int longEvery;

    @Option(names = "--output-len", defaultValue = "128", description = "Output tokens (default: ${DEFAULT-VALUE}).")
    int outputLen;

    @Option(names = "--output-len-range", defaultValue = "0", description = "Output length drawn uniformly in " +
        "len ± range.")
    int outputRange;

    @Option(names = "--vocab", defaultValue = "32000", description = "Token ids of random prompts are drawn from " +
        "[100, vocab - 100) (default: ${DEFAULT-VALUE}).")
    int vocab;

    @Option(names = "--dataset", description = "ShareGPT JSON file: prompts are the first human turn of each " +
        "conversation (sent as text), output lengths still from --output-len.")
    Path dataset;

    @Option(names = "--warmup", defaultValue = "2", description = "Requests before the measured ones.")
    int warmup;

    @Option(names = "--slo-ttft-ms", defaultValue = "2000", description = "Goodput: time to first token at most " +
        "(default: ${DEFAULT-VALUE}).")
    double sloTtftMs;

    @Option(names = "--slo-tpot-ms", defaultValue = "200", description = "Goodput: time per output token at most " +
        "(default: ${DEFAULT-VALUE}).")
    double sloTpotMs;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of prompts and arrivals.")
    long seed;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Option(names = "--detailed", description = "With --json: also each request's prompt and output tokens, TTFT, " +
        "TPOT, end-to-end time, inter-token latencies (between chunks with text), when the arrival process had it due " +
        "and when it was sent (seconds into the run, which began at started_at_ms on the wall clock), in the order " +
        "the requests were sent (as vLLM's --save-detailed).")
    boolean detailed;

    /** One request's outcome. */
    record Result(boolean ok, String error, int promptTokens, int outputTokens, double ttft, double e2e,
        double[] itl, long sentNanos)
    {
        double tpot()
        {
            return outputTokens > 1 ? (e2e - ttft) / (outputTokens - 1) : 0;
        }
    }

    /** One request to send. */
    record Work(Object prompt, int promptTokens, int maxTokens)
    {
    }

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        if (numPrompts < 1 || promptLen < 1 || outputLen < 1 || promptRange < 0 || outputRange < 0 ||
            promptRange >= promptLen || outputRange >= outputLen || vocab < 300 || maxConcurrency < 0)
        {
            throw new IllegalArgumentException("need --num-prompts, --prompt-len, --output-len >= 1, ranges below " +
                "their lengths, --vocab >= 300");
        }
        if (detailed && !json)
        {
            throw new IllegalArgumentException("--detailed needs --json: the per-request figures go into the JSON " +
                "object");
        }
        final double rate = requestRate.equals("inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(requestRate);
        if (!(rate > 0))
        {
            throw new IllegalArgumentException("--request-rate must be > 0 or inf");
        }
        final String key = apiKey != null ? apiKey : System.getenv("STRATA_API_KEY");
        final SplittableRandom random = new SplittableRandom(seed);
        final List<Work> work = work(random, warmup + numPrompts);
        final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor())
        {
            // warm-up, one at a time
            for (int i = 0; i < warmup; i++)
            {
                final Result r = send(http, key, work.get(i));
                if (!r.ok)
                {
                    throw new IllegalStateException("warm-up request failed: " + r.error);
                }
            }
            final Semaphore slots = new Semaphore(maxConcurrency > 0 ? maxConcurrency : Integer.MAX_VALUE);
            final AtomicInteger done = new AtomicInteger();
            final List<Future<Result>> futures = new ArrayList<>();
            final long start = System.nanoTime();
            final double[] due = new double[numPrompts];
            double next = 0;
            for (int i = 0; i < numPrompts; i++)
            {
                if (Double.isFinite(rate))
                {
                    next += -Math.log(1 - random.nextDouble()) / rate;
                    final long wait = start + (long)(next * 1e9) - System.nanoTime();
                    if (wait > 0)
                    {
                        Thread.sleep(wait / 1_000_000, (int)(wait % 1_000_000));
                    }
                }
                due[i] = next;
                slots.acquire();
                final Work w = work.get(warmup + i);
                futures.add(clients.submit(() ->
                {
                    try
                    {
                        return send(http, key, w);
                    }
                    finally
                    {
                        slots.release();
                        final int d = done.incrementAndGet();
                        if (!json)
                        {
                            synchronized (err)
                            {
                                err.printf("\r%d/%d requests done", d, numPrompts);
                                err.flush();
                            }
                        }
                    }
                }));
            }
            final List<Result> results = new ArrayList<>();
            for (final Future<Result> f : futures)
            {
                results.add(f.get());
            }
            final double seconds = (System.nanoTime() - start) / 1e9;
            if (!json)
            {
                err.println();
            }
            report(out, results, seconds, rate, start, due);
        }
        return 0;
    }

    private List<Work> work(final SplittableRandom random, final int n) throws Exception
    {
        final List<Work> work = new ArrayList<>();
        List<String> texts = null;
        if (dataset != null)
        {
            texts = new ArrayList<>();
            for (final JsonNode conv : JSON.readTree(dataset.toFile()))
            {
                final JsonNode turns = conv.path("conversations");
                if (turns.isArray() && !turns.isEmpty() && turns.get(0).path("value").isTextual())
                {
                    texts.add(turns.get(0).get("value").asText());
                }
            }
            if (texts.isEmpty())
            {
                throw new IllegalArgumentException(dataset + " holds no ShareGPT conversation");
            }
        }
        for (int i = 0; i < n; i++)
        {
            final int maxTokens = outputLen + (outputRange == 0 ? 0 : random.nextInt(-outputRange, outputRange + 1));
            if (texts != null)
            {
                work.add(new Work(texts.get(random.nextInt(texts.size())), -1, maxTokens));
                continue;
            }
            final int drawn = promptLen + (promptRange == 0 ? 0 : random.nextInt(-promptRange, promptRange + 1));
            final int len = longPromptLen > 0 && longEvery > 0 && i % longEvery == longEvery - 1 ? longPromptLen : drawn;
            final int[] ids = new int[len];
            for (int t = 0; t < len; t++)
            {
                ids[t] = 100 + random.nextInt(vocab - 200);
            }
            work.add(new Work(ids, len, maxTokens));
        }
        return work;
    }

    private Result send(final HttpClient http, final String key, final Work w)
    {
        final ObjectNode body = JSON.createObjectNode().put("model", model).put("max_tokens", w.maxTokens)
            .put("temperature", 0).put("stream", true).put("ignore_eos", true);
        if (w.prompt instanceof int[] ids)
        {
            final ArrayNode a = body.putArray("prompt");
            Arrays.stream(ids).forEach(a::add);
        }
        else
        {
            body.put("prompt", (String)w.prompt);
        }
        body.putObject("stream_options").put("include_usage", true);
        final HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url + "/completions"))
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body.toString()));
        if (key != null)
        {
            b.header("Authorization", "Bearer " + key);
        }
        final long t0 = System.nanoTime();
        try
        {
            final HttpResponse<Stream<String>> r = http.send(b.build(), HttpResponse.BodyHandlers.ofLines());
            if (r.statusCode() != 200)
            {
                final String text = String.join("\n", r.body().toList());
                return new Result(false, r.statusCode() + " " + text, 0, 0, 0, 0, new double[0], t0);
            }
            final List<Double> arrivals = new ArrayList<>();
            final int[] usage = {-1, -1};
            final boolean[] finished = {false};
            r.body().forEach(line ->
            {
                if (!line.startsWith("data: "))
                {
                    return;
                }
                final String data = line.substring(6);
                if (data.equals("[DONE]"))
                {
                    finished[0] = true;
                    return;
                }
                try
                {
                    final JsonNode n = JSON.readTree(data);
                    if (n.path("usage").isObject())
                    {
                        usage[0] = n.get("usage").path("prompt_tokens").asInt(-1);
                        usage[1] = n.get("usage").path("completion_tokens").asInt(-1);
                    }
                    final JsonNode choices = n.path("choices");
                    if (choices.isArray() && !choices.isEmpty() && !choices.get(0).path("text").asText("").isEmpty())
                    {
                        arrivals.add((System.nanoTime() - t0) / 1e9);
                    }
                }
                catch (final Exception e)
                {
                    throw new IllegalStateException("bad chunk: " + data, e);
                }
            });
            final double e2e = (System.nanoTime() - t0) / 1e9;
            if (!finished[0] || arrivals.isEmpty())
            {
                return new Result(false, "stream ended without [DONE] or text", 0, 0, 0, e2e, new double[0], t0);
            }
            final double[] itl = new double[arrivals.size() - 1];
            for (int i = 1; i < arrivals.size(); i++)
            {
                itl[i - 1] = arrivals.get(i) - arrivals.get(i - 1);
            }
            final int outputTokens = usage[1] > 0 ? usage[1] : arrivals.size();
            return new Result(true, null, usage[0] > 0 ? usage[0] : w.promptTokens, outputTokens, arrivals.get(0),
                e2e, itl, t0);
        }
        catch (final Exception e)
        {
            return new Result(false, e.toString(), 0, 0, 0, 0, new double[0], t0);
        }
    }

    private void report(final PrintWriter out, final List<Result> results, final double seconds, final double rate,
        final long start, final double[] due)
    {
        final List<Result> ok = results.stream().filter(Result::ok).toList();
        final double[] ttft = ok.stream().mapToDouble(Result::ttft).toArray();
        final double[] tpot = ok.stream().mapToDouble(Result::tpot).toArray();
        final double[] e2e = ok.stream().mapToDouble(Result::e2e).toArray();
        final double[] itl = ok.stream().flatMapToDouble(r -> Arrays.stream(r.itl)).toArray();
        final long outTokens = ok.stream().mapToLong(Result::outputTokens).sum();
        final long inTokens = ok.stream().mapToLong(Result::promptTokens).sum();
        final long good = ok.stream().filter(r -> r.ttft * 1000 <= sloTtftMs && r.tpot() * 1000 <= sloTpotMs).count();
        final DecodeMix.Summary mix = DecodeMix.of(ok.stream().map(r -> DecodeMix.arrivals(r, start)).toList());
        if (json)
        {
            final ObjectNode root = JSON.createObjectNode();
            root.put("url", url).put("model", model).put("num_prompts", results.size())
                .put("request_rate", Double.isFinite(rate) ? rate : -1).put("max_concurrency", maxConcurrency)
                .put("completed", ok.size()).put("failed", results.size() - ok.size()).put("duration_s", seconds)
                .put("request_throughput", ok.size() / seconds).put("output_throughput", outTokens / seconds)
                .put("total_token_throughput", (inTokens + outTokens) / seconds).put("goodput", good / seconds)
                .put("input_tokens", inTokens).put("output_tokens", outTokens);
            stats(root, "ttft_ms", ttft);
            stats(root, "tpot_ms", tpot);
            stats(root, "itl_ms", itl);
            stats(root, "e2e_ms", e2e);
            final ObjectNode m = root.putObject("decode_mix");
            ratio(m, "measured_p99_over_p50", mix.measuredRatio());
            ratio(m, "mix_p99_over_p50", mix.mixRatio());
            final ArrayNode rows = m.putArray("itl_by_decoding");
            for (final DecodeMix.Row r : mix.rows())
            {
                rows.addObject().put("decoding", r.decoding()).put("gaps", r.gaps()).put("p50_ms", r.p50Ms())
                    .put("p90_ms", r.p90Ms());
            }
            if (detailed)
            {
                // when the run began on the wall clock, and when each request went out after it (logs, profiles)
                root.put("started_at_ms", System.currentTimeMillis() - (System.nanoTime() - start) / 1_000_000);
                final ArrayNode requests = root.putArray("requests");
                for (int i = 0; i < results.size(); i++)
                {
                    final Result r = results.get(i);
                    // due_s is the arrival process's time for it: sent_s after due_s is the client's own lag
                    final ObjectNode o = requests.addObject().put("ok", r.ok).put("due_s", due[i])
                        .put("sent_s", (r.sentNanos - start) / 1e9);
                    if (!r.ok)
                    {
                        o.put("error", r.error);
                        continue;
                    }
                    o.put("input_len", r.promptTokens).put("output_len", r.outputTokens).put("ttft_ms", 1000 * r.ttft)
                        .put("tpot_ms", 1000 * r.tpot()).put("e2e_ms", 1000 * r.e2e);
                    final ArrayNode itls = o.putArray("itl_ms");
                    for (final double v : r.itl)
                    {
                        itls.add(1000 * v);
                    }
                }
            }
            out.println(root);
        }
        else
        {
            out.printf(Locale.ROOT, "requests: %d ok, %d failed in %.2f s | %.2f req/s | output %.1f tok/s | total " +
                "%.1f tok/s | goodput %.2f req/s (TTFT <= %.0f ms, TPOT <= %.0f ms)%n", ok.size(),
                results.size() - ok.size(), seconds, ok.size() / seconds, outTokens / seconds,
                (inTokens + outTokens) / seconds, good / seconds, sloTtftMs, sloTpotMs);
            out.printf("%-10s %10s %10s %10s %10s%n", "ms", "mean", "p50", "p90", "p99");
            row(out, "TTFT", ttft);
            row(out, "TPOT", tpot);
            row(out, "ITL", itl);
            row(out, "E2E", e2e);
            out.println(DecodeMix.line(mix));
            results.stream().filter(r -> !r.ok).limit(3).forEach(r -> out.println("failed: " + r.error));
        }
    }

    private static void row(final PrintWriter out, final String name, final double[] v)
    {
        out.printf(Locale.ROOT, "%-10s %10.1f %10.1f %10.1f %10.1f%n", name, 1000 * mean(v), 1000 * pct(v, 50),
            1000 * pct(v, 90), 1000 * pct(v, 99));
    }

    /** No ratio without a request of two tokens or more: null, as JSON has no NaN. */
    private static void ratio(final ObjectNode o, final String name, final double v)
    {
        o.set(name, Double.isNaN(v) ? o.nullNode() : o.numberNode(v));
    }

    private static void stats(final ObjectNode root, final String name, final double[] v)
    {
        root.putObject(name).put("mean", 1000 * mean(v)).put("p50", 1000 * pct(v, 50)).put("p90", 1000 * pct(v, 90))
            .put("p99", 1000 * pct(v, 99));
    }

    private static double mean(final double[] v)
    {
        return v.length == 0 ? 0 : Arrays.stream(v).sum() / v.length;
    }

    /** Nearest-rank percentile. */
    static double pct(final double[] v, final double p)
    {
        if (v.length == 0)
        {
            return 0;
        }
        final double[] s = v.clone();
        Arrays.sort(s);
        return s[Math.max(0, (int)Math.ceil(p / 100 * s.length) - 1)];
    }
}
