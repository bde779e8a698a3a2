package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufMetadata;
import dev.strata.compute.synth.SyntheticModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code strata synth}: writes a deterministic synthetic Llama model. */
@Command(name = "synth", description = "Write a deterministic synthetic Llama GGUF model of a given shape and type.")
final class SynthCommand implements Callable<Integer>
{
    @Option(names = "--shape", required = true,
        description = "tiny | 15M | 110M | 1.1B | dim=..,layers=..,heads=..,kv=..,ffn=..[,vocab=..][,context=..]")
    String shape;

    @Option(names = "--type", description = "F32 | F16 | BF16 | Q8_0 | Q4_0 (default: ${DEFAULT-VALUE}).")
    String type = "Q8_0";

    @Option(names = "--tokenizer", description = "GGUF whose tokenizer to reuse (default: a built-in byte vocabulary).")
    Path tokenizer;

    @Option(names = "--seed", description = "Seed of the weights (default: ${DEFAULT-VALUE}).")
    long seed = 1;

    @Option(names = {"-o", "--out"}, required = true, description = "Output GGUF file.")
    Path output;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        final GgmlType ggmlType;
        try
        {
            ggmlType = GgmlType.valueOf(type.toUpperCase());
        }
        catch (final IllegalArgumentException ex)
        {
            throw new IllegalArgumentException("unknown --type " + type + " (F32, F16, BF16, Q8_0, Q4_0)");
        }
        final SyntheticModel.Shape s = SyntheticModel.Shape.parse(shape);
        final long start = System.nanoTime();
        final int vocab;
        if (tokenizer != null)
        {
            try (GgufFile tok = GgufFile.open(tokenizer))
            {
                final GgufMetadata md = tok.metadata();
                if (!md.contains("tokenizer.ggml.tokens"))
                {
                    throw new IllegalArgumentException(tokenizer + " has no tokenizer (tokenizer.ggml.tokens)");
                }
                vocab = SyntheticModel.write(output, s, ggmlType, md, seed);
            }
        }
        else
        {
            vocab = SyntheticModel.write(output, s, ggmlType, null, seed);
        }
        out.printf("wrote %s: %s %s, %,d parameters, vocab %d, %,d bytes in %.1f s%n", output, shape, ggmlType,
            s.parameters(vocab), vocab, Files.size(output), (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
