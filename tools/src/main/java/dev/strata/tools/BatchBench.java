package dev.strata.tools;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.ForwardBatch;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.compute.model.KvBlockPool;
import dev.strata.compute.model.Llama;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/**
 * {@code strata bench batch}: aggregate decode speed of many sequences per step, the way llama.cpp's
 * {@code llama-batched-bench} measures it: for each batch size B, B prompts of {@code --prompt-tokens} (prefill, in
 * steps of up to {@code --ubatch} rows), then {@code --gen-tokens} steps of B decode rows, each sequence's KV in the
 * engine's block pool. With {@code --peer}, runs llama-batched-bench on the same file and threads too, alternating
 * which side goes first, and reports the ratios of the best runs.
 */
@Command(name = "batch", description = "Aggregate decode tok/s at several batch sizes over the paged KV pool " +
    "(the engine's step), optionally side by side with llama-batched-bench (--peer).")
final class BatchBench implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, description = "GGUF model file.")
    Path model;

    @Option(names = {"-t", "--threads"}, description = "Compute threads (default: available processors).")
    int threads = Runtime.getRuntime().availableProcessors();

    @Option(names = "--batch", split = ",", description = "Batch sizes (default: ${DEFAULT-VALUE}).")
    List<Integer> batches = List.of(1, 8, 16, 32);

    @Option(names = "--prompt-tokens", description = "Prompt tokens per sequence (default: ${DEFAULT-VALUE}).")
    int promptTokens = 128;

    @Option(names = "--gen-tokens", description = "Decode steps (default: ${DEFAULT-VALUE}).")
    int genTokens = 128;

    @Option(names = "--ubatch", description = "Most rows of a prefill step (default: ${DEFAULT-VALUE}).")
    int ubatch = 512;

    @Option(names = "--kv-type", defaultValue = "f16", description = "f16, f32 or q8 (llama.cpp: q8_0; default: " +
        "${DEFAULT-VALUE}).")
    String kvType;

    @Option(names = "--batch-invariant", description = "Products with the bits split nodes use by default (strata " +
        "node --batch-invariant): prompts on the batched native kernels even where the float panels are faster.")
    boolean batchInvariant;

    @Option(names = "--repetitions", description = "Runs per side and batch size; the best counts (default: " +
        "${DEFAULT-VALUE}).")
    int repetitions = 1;

    @Option(names = "--peer", paramLabel = "PATH", description = "llama-batched-bench binary to run side by side.")
    Path peer;

    @Option(names = "--json", description = "Print one JSON object.")
    boolean json;

    /** One side's figures at one batch size. */
    record Run(double prefillTokS, double decodeTokS, long kvBytes)
    {
    }

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        if (promptTokens < 1 || genTokens < 1 || repetitions < 1 || ubatch < 1 || batches.isEmpty() ||
            batches.stream().anyMatch(b -> b < 1))
        {
            throw new IllegalArgumentException("--prompt-tokens, --gen-tokens, --ubatch, --repetitions and every " +
                "--batch must be >= 1");
        }
        if (peer != null && !Files.isExecutable(peer))
        {
            throw new IllegalArgumentException("--peer " + peer + " is not an executable file");
        }
        final KvBlockPool.KvType type = KvBlockPool.KvType.parse(kvType);
        final int maxBatch = batches.stream().mapToInt(Integer::intValue).max().orElseThrow();
        final Map<Integer, Run> strata = new LinkedHashMap<>();
        final Map<Integer, Run> llama = new LinkedHashMap<>();
        if (threads < 1)
        {
            throw new IllegalArgumentException("--threads must be at least 1, got " + threads);
        }
        // the weight source owns (and closes) the file
        try (GgufWeightSource weights = new GgufWeightSource(GgufFile.open(this.model), true);
            ThreadPool pool = new ThreadPool(threads))
        {
            final Llama model = new Llama(weights, pool, Math.max(ubatch, maxBatch));
            model.batchInvariant(batchInvariant);
            if (promptTokens + genTokens > model.config().contextLength())
            {
                throw new IllegalArgumentException("--prompt-tokens + --gen-tokens exceed the model's context of " +
                    model.config().contextLength());
            }
            // warm-up: let the JIT compile the batched paths
            final long warmEnd = System.nanoTime() + 3_000_000_000L;
            do
            {
                run(model, type, Math.min(4, maxBatch), 20, 4);
            }
            while (System.nanoTime() < warmEnd);
            for (final int b : batches)
            {
                for (int rep = 0; rep < repetitions; rep++)
                {
                    final boolean peerFirst = peer != null && rep % 2 == 1;
                    if (peerFirst)
                    {
                        llama.merge(b, peer(b, threads, type, err), BatchBench::best);
                    }
                    strata.merge(b, run(model, type, b, promptTokens, genTokens), BatchBench::best);
                    if (peer != null && !peerFirst)
                    {
                        llama.merge(b, peer(b, threads, type, err), BatchBench::best);
                    }
                }
                if (!json)
                {
                    final Run s = strata.get(b);
                    final Run p = llama.get(b);
                    out.printf(Locale.ROOT, "batch %3d: prefill %8.2f tok/s | decode %8.2f tok/s aggregate, %7.2f " +
                        "per sequence | KV %s%s%n", b, s.prefillTokS, s.decodeTokS, s.decodeTokS / b,
                        Sizes.format(s.kvBytes), p == null ? "" : String.format(Locale.ROOT, " | llama.cpp S_PP " +
                            "%.2f S_TG %.2f | ratio decode %.2f prefill %.2f", p.prefillTokS, p.decodeTokS,
                            s.decodeTokS / p.decodeTokS, s.prefillTokS / p.prefillTokS));
                    out.flush();
                }
            }
            final double prefillBest = strata.values().stream().mapToDouble(Run::prefillTokS).max().orElse(0);
            if (json)
            {
                final ObjectMapper mapper = new ObjectMapper();
                final ObjectNode root = mapper.createObjectNode();
                root.put("model", this.model.getFileName().toString());
                root.put("threads", threads);
                root.put("kv_type", type.name().toLowerCase(Locale.ROOT));
                root.put("prompt_tokens", promptTokens);
                root.put("gen_tokens", genTokens);
                root.put("prefill_tok_s", prefillBest);
                final ArrayNode runs = root.putArray("runs");
                for (final var e : strata.entrySet())
                {
                    final ObjectNode r = runs.addObject();
                    r.put("batch", e.getKey());
                    r.put("prefill_tok_s", e.getValue().prefillTokS);
                    r.put("decode_tok_s", e.getValue().decodeTokS);
                    r.put("per_seq_tok_s", e.getValue().decodeTokS / e.getKey());
                    r.put("kv_bytes", e.getValue().kvBytes);
                    r.put("decode_vs_prefill", e.getValue().decodeTokS / prefillBest);
                    final Run p = llama.get(e.getKey());
                    if (p != null)
                    {
                        r.put("peer_prefill_tok_s", p.prefillTokS);
                        r.put("peer_decode_tok_s", p.decodeTokS);
                        r.put("decode_ratio", e.getValue().decodeTokS / p.decodeTokS);
                    }
                }
                out.println(mapper.writeValueAsString(root));
            }
            else
            {
                out.printf(Locale.ROOT, "prefill (best of the batch sizes) %.2f tok/s: the compute limit of a step " +
                    "that reads each weight once; decode at batch %d is %.0f%% of it%n", prefillBest, maxBatch,
                    100 * strata.get(maxBatch).decodeTokS / prefillBest);
            }
        }
        return 0;
    }

    private static Run best(final Run a, final Run b)
    {
        return new Run(Math.max(a.prefillTokS, b.prefillTokS), Math.max(a.decodeTokS, b.decodeTokS),
            Math.max(a.kvBytes, b.kvBytes));
    }

    /** B prompts of {@code pp} tokens, then {@code tg} decode steps of B rows, through {@link Llama#execute}. */
    static Run run(final Llama model, final KvBlockPool.KvType type, final int b, final int pp, final int tg)
    {
        final int bt = 16;
        final long blockBytes = KvBlockPool.blockBytes(model.config(), type, bt);
        final int perSeq = (pp + tg + bt - 1) / bt;
        try (KvBlockPool pool = new KvBlockPool(model.config(), type, bt, blockBytes * perSeq * b))
        {
            final int[][] tables = new int[b][perSeq];
            for (int s = 0; s < b; s++)
            {
                for (int i = 0; i < perSeq; i++)
                {
                    tables[s][i] = pool.allocate();
                }
            }
            final SplittableRandom random = new SplittableRandom(7);
            final int vocab = model.config().vocabSize();
            final int[][] prompts = new int[b][pp];
            for (final int[] p : prompts)
            {
                for (int i = 0; i < pp; i++)
                {
                    p[i] = 3 + random.nextInt(vocab - 3);
                }
            }
            final int rowsPerStep = model.maxBatch();
            final int[] rows = new int[Math.max(rowsPerStep, b)];
            // prefill: the prompts one after another, cut into steps of up to rowsPerStep rows
            final long p0 = System.nanoTime();
            int seq = 0;
            int done = 0;
            while (seq < b)
            {
                final List<ForwardBatch.Segment> segs = new ArrayList<>();
                int row = 0;
                while (seq < b && row < rowsPerStep)
                {
                    final int n = Math.min(pp - done, rowsPerStep - row);
                    System.arraycopy(prompts[seq], done, rows, row, n);
                    done += n;
                    final boolean last = seq == b - 1 && done == pp;
                    segs.add(new ForwardBatch.Segment(row, n, done - n, tables[seq], last));
                    row += n;
                    if (done == pp)
                    {
                        seq++;
                        done = 0;
                    }
                }
                model.execute(new ForwardBatch(rows, segs.toArray(ForwardBatch.Segment[]::new)), pool);
            }
            final long p1 = System.nanoTime();
            // decode: every sequence one token per step, logits for all, the next token their argmax
            final ForwardBatch.Segment[] segs = new ForwardBatch.Segment[b];
            for (int i = 0; i < b; i++)
            {
                rows[i] = prompts[i][pp - 1];
            }
            for (int step = 0; step < tg; step++)
            {
                for (int s = 0; s < b; s++)
                {
                    segs[s] = new ForwardBatch.Segment(s, 1, pp + step, tables[s], true);
                }
                final float[][] logits = model.execute(new ForwardBatch(rows, segs), pool);
                for (int s = 0; s < b; s++)
                {
                    rows[s] = RuntimeBench.argmax(logits[s]);
                }
            }
            final long p2 = System.nanoTime();
            return new Run(b * (double)pp * 1e9 / (p1 - p0), b * (double)tg * 1e9 / (p2 - p1),
                (long)pool.inUse() * pool.blockBytes());
        }
    }

    /** Runs llama-batched-bench at one batch size and reads its S_PP and S_TG columns. */
    private Run peer(final int b, final int threads, final KvBlockPool.KvType type, final PrintWriter err)
        throws Exception
    {
        // llama.cpp's nearest 8-bit cache scales blocks of 32 elements (Strata's Q8: a key-value head's elements)
        final String kv = type == KvBlockPool.KvType.Q8 ? "q8_0" : type.name().toLowerCase(Locale.ROOT);
        final List<String> cmd = new ArrayList<>(List.of(peer.toString(), "-m", this.model.toString(), "-t",
            String.valueOf(threads), "-c", String.valueOf(b * (promptTokens + genTokens) + 16), "-b",
            String.valueOf(Math.max(2048, ubatch)), "-ub", String.valueOf(ubatch), "-npp", String.valueOf(promptTokens),
            "-ntg", String.valueOf(genTokens), "-npl", String.valueOf(b), "-ctk", kv, "-ctv", kv));
        if (type == KvBlockPool.KvType.Q8)
        {
            cmd.add("-fa"); // llama.cpp quantizes a V cache only with its flash attention
        }
        final Process process = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        Run result = null;
        final StringBuilder log = new StringBuilder();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
            StandardCharsets.UTF_8)))
        {
            String line;
            while ((line = r.readLine()) != null)
            {
                log.append(line).append('\n');
                final String[] cols = line.split("\\|");
                // |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
                if (cols.length >= 10 && cols[1].trim().matches("\\d+") && cols[3].trim().equals(String.valueOf(b)))
                {
                    result = new Run(Double.parseDouble(cols[6].trim()), Double.parseDouble(cols[8].trim()), 0);
                }
            }
        }
        if (process.waitFor() != 0 || result == null)
        {
            err.print(log);
            throw new IllegalStateException("llama-batched-bench failed (exit " + process.exitValue() + "): " +
                String.join(" ", cmd));
        }
        return result;
    }
}
