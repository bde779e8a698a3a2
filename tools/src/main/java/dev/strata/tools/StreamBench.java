package dev.strata.tools;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.Generator;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.Llama;
import dev.strata.compute.model.WeightSource;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.stream.BlockChannel;
import dev.strata.compute.stream.RemoteModel;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.paramclient.BlockClient;
import dev.strata.paramclient.Manifest;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramserver.ParamService;
import dev.strata.prefetch.PrefetchStats;
import dev.strata.transport.BlockId;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * {@code strata bench stream}: decode tokens/s of a node streaming a model's weights from a parameter service
 * (in this process, over Aeron), with the node's memory budget at fractions of the model, prefetch off and on,
 * next to the bound for each setting: the compute-bound speed of the local runtime, and the transfer-bound speed
 * (link bandwidth, measured in the same run by pulling the model's blocks, over the bytes the node fetched per
 * token). The bound is the smaller of the two. Both the local speed and each streamed setting are the best of
 * three measured windows of {@code --tokens} tokens.
 */
@Command(name = "stream", description = "Decode tokens/s streaming weights from a parameter service at several " +
    "memory budgets, prefetch off and on, against the compute and transfer bounds measured in the run.")
final class StreamBench implements Callable<Integer>
{
    private static final String TOKEN = "bench";

    @Spec
    CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, description = "GGUF model file to serve.")
    Path model;

    @Option(names = "--tokens", description = "Decode tokens per measured window, best of 3 (default ${DEFAULT-VALUE}).")
    int tokens = 32;

    @Option(names = "--fractions", split = ",", description = "Budgets as fractions of the model (default 1,0.5,0.25).")
    double[] fractions = {1.0, 0.5, 0.25};

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default ${DEFAULT-VALUE}).")
    int threads = 2;

    @Option(names = "--aeron", defaultValue = "ipc", description = "udp or ipc (default ${DEFAULT-VALUE}).")
    String aeron;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    @Option(names = "--link-gbps", description = "Cap the service's block sends at this many GB/s (10^9 bytes of " +
        "payload per second; a token bucket on the service's send side), to stand for a network link between node " +
        "and service on one host. Default: no cap.")
    double linkGbps;

    private static final int[] PROMPT = {1, 450, 4996, 17354, 1701, 432, 17204, 975};

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        final BlockChannel.Mode mode = aeron.equals("udp") ? BlockChannel.Mode.UDP : BlockChannel.Mode.IPC;
        final Map<String, Object> result = new LinkedHashMap<>();
        final Path data = Files.createTempDirectory("strata-bench-stream");
        // the service's memory tier holds the whole model: the runs measure the node and the link, warm
        final long serviceMemory = Math.max(1L << 30, Files.size(model) * 3 / 2);
        if (linkGbps < 0 || Double.isNaN(linkGbps))
        {
            throw new CommandLine.ParameterException(spec.commandLine(), "--link-gbps must be positive, not " + linkGbps);
        }
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)
                 .memoryBudgetBytes(serviceMemory).linkBytesPerSecond((long)(linkGbps * 1e9)));
             GgufFile gguf = GgufFile.open(model))
        {
            final ParamClient admin = new ParamClient("localhost:" + service.adminPort(), TOKEN);
            err.println("importing " + model + " ...");
            final ModelImporter.Plan plan = ModelImporter.plan(gguf, "bench");
            final byte[] manifest = plan.manifest().encode();
            final int version = service.beginUpload("bench", BlockId.of(manifest).hex()).getKey().number();
            ModelImporter.upload(plan, ModelImporter.storeSink(service.store()), (a, b, c, d) -> { }, 2);
            service.commit("bench", version, manifest);
            service.execute(new dev.strata.paramserver.RegistryCommand.Promote("bench", version));

            final int[] prompt = clampPrompt(gguf);
            final double compute;
            try (GgufWeightSource local = new GgufWeightSource(gguf, false))
            {
                decode(local, prompt, tokens, null); // warm-up: the JIT compiles the kernels
                double best = 0;
                for (int i = 0; i < 3; i++) // best of three: this machine is shared and noisy
                {
                    best = Math.max(best, decode(local, prompt, tokens, null));
                }
                compute = best;
            }
            final long[] before = service.store().stats().hits().clone();
            final double[] linkAndCpu = linkBandwidth(admin, plan.manifest(), mode);
            final double link = linkAndCpu[0];
            final double cpuPerByte = linkAndCpu[1];
            final long[] after = service.store().stats().hits();
            err.printf("link pulls served from the service's memory/SSD/object tiers: %d/%d/%d blocks%n",
                after[0] - before[0], after[1] - before[1], after[2] - before[2]);
            result.put("model", model.toString());
            result.put("model_bytes", plan.manifest().tensors().stream().mapToLong(Manifest.Tensor::byteSize).sum());
            result.put("aeron", aeron);
            result.put("link_cap_gbs", linkGbps > 0 ? linkGbps : null);
            result.put("compute_bound_tok_s", compute);
            result.put("link_gbs", link / 1e9);
            result.put("link_cpu_s_per_gb", cpuPerByte * 1e9);
            err.printf(Locale.ROOT, "compute bound %.1f tok/s (local runtime), link %.2f GB/s (%s) at %.3f CPU s/GB%n",
                compute, link / 1e9, aeron, cpuPerByte * 1e9);

            final List<Map<String, Object>> runs = new ArrayList<>();
            for (final double fraction : fractions)
            {
                for (final boolean prefetch : new boolean[]{false, true})
                {
                    try (RemoteModel remote = RemoteModel.open(admin, "bench", "stable", "bench-node", 120_000))
                    {
                        final long full = remote.totalBytes() + 64L * 64 * (remote.config().layers() + 1);
                        final long budget = (long)(full * fraction);
                        final PrefetchStats stats = new PrefetchStats();
                        final StreamingWeightSource.Options options = StreamingWeightSource.Options.defaults(budget)
                            .withPrefetch(prefetch).withMode(mode);
                        final Map<String, Object> run = new LinkedHashMap<>();
                        run.put("fraction", fraction);
                        run.put("prefetch", prefetch);
                        run.put("budget_bytes", budget);
                        try (StreamingWeightSource w = new StreamingWeightSource(remote, options, stats))
                        {
                            // warm-up: the memory tier fills, the predictors learn; then measure
                            decode(w, prompt, Math.max(2, tokens / 4), null);
                            final long[] fetchedAtFirstToken = new long[1];
                            final long[] hitsBefore = service.store().stats().hits().clone();
                            // best of three windows, as for the compute bound: this machine is shared and noisy
                            double tokS = 0;
                            long fetchedInWindows = 0;
                            for (int i = 0; i < 3; i++)
                            {
                                tokS = Math.max(tokS, decode(w, prompt, tokens,
                                    () -> fetchedAtFirstToken[0] = stats.report().fetchedBytes()));
                                fetchedInWindows += stats.report().fetchedBytes() - fetchedAtFirstToken[0];
                            }
                            final long[] hitsAfter = service.store().stats().hits();
                            // where the service found the blocks the node pulled in the measured tokens
                            run.put("service_memory_hits", hitsAfter[0] - hitsBefore[0]);
                            run.put("service_ssd_hits", hitsAfter[1] - hitsBefore[1]);
                            run.put("service_object_hits", hitsAfter[2] - hitsBefore[2]);
                            final double perToken = fetchedInWindows / (3.0 * Math.max(1, tokens - 1));
                            final double transfer = perToken <= 0 ? Double.POSITIVE_INFINITY : link / perToken;
                            final double bound = Math.min(compute, transfer);
                            // node and service share this machine's cores: a token costs the cores its compute
                            // (the local runtime keeps every core busy) plus the CPU of moving its bytes, both ends
                            final int cores = Runtime.getRuntime().availableProcessors();
                            final double cpuBound = cores / (Math.min(threads, cores) / compute + perToken * cpuPerByte);
                            final PrefetchStats.Report r = stats.report();
                            run.put("decode_tok_s", tokS);
                            run.put("bound_tok_s", bound);
                            run.put("of_bound", tokS / bound);
                            run.put("shared_cpu_bound_tok_s", cpuBound);
                            run.put("of_shared_cpu_bound", tokS / cpuBound);
                            run.put("bytes_per_token", (long)perToken);
                            run.put("peak_bytes", w.peakBytes());
                            run.put("accuracy", r.accuracy());
                            run.put("coverage", r.coverage());
                            run.put("timeliness", r.timeliness());
                            run.put("wasted_bytes", r.wastedBytes());
                            run.put("cancelled", r.cancelled());
                            run.put("cancelled_in_flight", r.cancelledInFlight());
                            run.put("stall_ms_per_token", r.stallMillisPerToken());
                        }
                        catch (final IllegalArgumentException ex)
                        {
                            run.put("error", ex.getMessage()); // a budget below the minimum
                        }
                        runs.add(run);
                        err.println(describe(run));
                    }
                }
            }
            result.put("runs", runs);
        }
        finally
        {
            try (var files = Files.walk(data))
            {
                files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        if (json)
        {
            out.println(ModelCommand.JSON.writeValueAsString(result));
        }
        else
        {
            out.printf(Locale.ROOT, "compute bound %.1f tok/s, link %.2f GB/s at %.3f CPU s/GB%n",
                result.get("compute_bound_tok_s"), result.get("link_gbs"), result.get("link_cpu_s_per_gb"));
            @SuppressWarnings("unchecked")
            final List<Map<String, Object>> runs = (List<Map<String, Object>>)result.get("runs");
            runs.forEach(r -> out.println(describe(r)));
        }
        return 0;
    }

    private static String describe(final Map<String, Object> r)
    {
        if (r.containsKey("error"))
        {
            return String.format(Locale.ROOT, "budget %.0f%% prefetch %-5s: %s", 100 * (Double)r.get("fraction"),
                r.get("prefetch"), r.get("error"));
        }
        return String.format(Locale.ROOT, "budget %3.0f%% prefetch %-5s: %6.2f tok/s, bound %6.2f (%3.0f%%), " +
                "shared-CPU bound %6.2f (%3.0f%%), %s/token, stall %.1f ms/token, coverage %.2f, timeliness %.2f, service tiers %d/%d/%d blocks",
            100 * (Double)r.get("fraction"), r.get("prefetch"), r.get("decode_tok_s"), r.get("bound_tok_s"),
            100 * (Double)r.get("of_bound"), r.get("shared_cpu_bound_tok_s"),
            100 * (Double)r.get("of_shared_cpu_bound"), Sizes.format((Long)r.get("bytes_per_token")),
            r.get("stall_ms_per_token"), r.get("coverage"), r.get("timeliness"), r.get("service_memory_hits"),
            r.get("service_ssd_hits"), r.get("service_object_hits"));
    }

    private int[] clampPrompt(final GgufFile gguf)
    {
        final long vocab = gguf.tensor("token_embd.weight").shape()[1];
        final int[] p = PROMPT.clone();
        for (int i = 0; i < p.length; i++)
        {
            p[i] = (int)(p[i] % vocab);
        }
        return p;
    }

    /** Decode tokens/s of a greedy generation of {@code n} tokens after the prompt. */
    private double decode(final WeightSource weights, final int[] prompt, final int n, final Runnable onFirstToken)
    {
        try (ThreadPool pool = new ThreadPool(threads))
        {
            final Llama llama = new Llama(weights, pool, 64);
            final boolean[] first = {true};
            final Generator.Result r = new Generator(llama).generate(prompt, n, prompt.length + n + 1,
                Sampler.create(SamplerConfig.greedy()), t -> false, t ->
                {
                    if (first[0] && onFirstToken != null)
                    {
                        onFirstToken.run();
                    }
                    first[0] = false;
                    return true;
                });
            return r.decodeTokensPerSecond();
        }
    }

    /**
     * Bytes/s of pulling every distinct block of the model into a node buffer the way a node does: requests of
     * up to 16 blocks (a layer's worth), two in flight. Best of three passes (the first also warms the service's
     * memory tier), and the CPU seconds that pass took per byte, on both ends of the link together.
     */
    private static double[] linkBandwidth(final ParamClient admin, final Manifest manifest, final BlockChannel.Mode mode)
        throws Exception
    {
        final List<BlockId> ids = new ArrayList<>(new LinkedHashSet<>(manifest.allBlocks()));
        final var e = admin.endpoints();
        final TransportContext ctx = mode == BlockChannel.Mode.IPC ?
            new TransportContext().embeddedDriver(false).aeronDirectory(e.aeronDir()) :
            new TransportContext();
        final int perRequest = 1;
        final int window = 32;
        long largest = 0;
        for (final BlockId id : ids)
        {
            largest = Math.max(largest, id.length());
        }
        try (Transport t = Transport.launch(ctx); Arena arena = Arena.ofConfined())
        {
            final BlockClient client = BlockClient.connect(t.aeron(), mode == BlockChannel.Mode.IPC ?
                e.ipcChannel() : e.udpChannel(), e.streamId(),
                "localhost", TimeUnit.SECONDS.toNanos(10)).verifyDigests(false); // as the node: CRC32C per chunk
            final MemorySegment[] buffers = new MemorySegment[window];
            for (int i = 0; i < window; i++)
            {
                buffers[i] = arena.allocate(largest * perRequest, 64);
            }
            final long[] offsets = new long[perRequest];
            for (int i = 0; i < perRequest; i++)
            {
                offsets[i] = i * largest;
            }
            double best = 0;
            double cpuPerByte = 0;
            for (int pass = 0; pass < 6; pass++)
            {
                final long start = System.nanoTime();
                final long cpuStart = ProcessCpu.nanos();
                long bytes = 0;
                final java.util.ArrayDeque<Long> inflight = new java.util.ArrayDeque<>();
                int r = 0;
                for (int from = 0; from < ids.size(); from += perRequest, r++)
                {
                    if (inflight.size() == buffers.length)
                    {
                        client.await(inflight.poll());
                    }
                    final List<BlockId> part = ids.subList(from, Math.min(ids.size(), from + perRequest));
                    inflight.add(client.submitInto("bench@1", part, buffers[r % buffers.length],
                        java.util.Arrays.copyOf(offsets, part.size()), TimeUnit.SECONDS.toNanos(60), 0));
                    for (final BlockId id : part)
                    {
                        bytes += id.length();
                    }
                }
                while (!inflight.isEmpty())
                {
                    client.await(inflight.poll());
                }
                final double rate = bytes / ((System.nanoTime() - start) / 1e9);
                final double cpu = (ProcessCpu.nanos() - cpuStart) / 1e9 / bytes;
                System.err.printf(Locale.ROOT, "link pass %d: %.2f GB/s, %.3f CPU s/GB%n", pass, rate / 1e9, cpu * 1e9);
                if (rate > best)
                {
                    best = rate;
                    cpuPerByte = cpu;
                }
            }
            client.close();
            return new double[]{best, cpuPerByte};
        }
    }
}
