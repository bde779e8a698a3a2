package dev.strata.tools;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code strata tokenize}: prints the token ids (and pieces) of a text. */
@Command(name = "tokenize", description = "Print the token ids of a text, as llama.cpp tokenizes it.")
final class TokenizeCommand implements Callable<Integer>
{
    @Option(names = {"-m", "--model"}, required = true, description = "GGUF file holding the tokenizer.")
    Path model;

    @Option(names = "--ids-only", description = "Print only the ids, as a list.")
    boolean idsOnly;

    @Option(names = "--no-bos", description = "Do not add BOS/EOS (add_special=false, parse_special=false).")
    boolean noBos;

    @Parameters(index = "0", description = "Text to tokenize.")
    String text;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        try (GgufFile file = GgufFile.open(model))
        {
            final Tokenizer tokenizer = Tokenizer.fromGguf(file.metadata());
            final int[] ids = tokenizer.encode(text, !noBos, !noBos);
            if (idsOnly)
            {
                final StringBuilder sb = new StringBuilder("[");
                for (int i = 0; i < ids.length; i++)
                {
                    sb.append(i == 0 ? "" : ", ").append(ids[i]);
                }
                out.println(sb.append(']'));
            }
            else
            {
                for (final int id : ids)
                {
                    out.printf("%6d -> '%s'%n", id,
                        new String(tokenizer.tokenBytes(id), StandardCharsets.UTF_8));
                }
            }
        }
        return 0;
    }
}
