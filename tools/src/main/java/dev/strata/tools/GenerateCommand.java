package dev.strata.tools;

import dev.strata.compute.chat.ChatMessage;
import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.model.Generator;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.tokenizer.StreamingDecoder;
import dev.strata.compute.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code strata generate}: streams a completion of a prompt from a local GGUF model. */
@Command(name = "generate", description = "Generate text from a prompt with a local GGUF model.")
final class GenerateCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Mixin
    ModelOptions modelOptions;

    @Option(names = {"-p", "--prompt"}, required = true, description = "Prompt text.")
    String prompt;

    @Option(names = {"-n", "--max-tokens"}, description = "Most tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxTokens = 256;

    @Option(names = "--temperature", description = "Sampling temperature; 0 is greedy (default: ${DEFAULT-VALUE}).")
    float temperature = 0.8f;

    @Option(names = "--top-k", description = "Top-k; 0 disables (default: ${DEFAULT-VALUE}).")
    int topK = 40;

    @Option(names = "--top-p", description = "Top-p (nucleus); 1 disables (default: ${DEFAULT-VALUE}).")
    float topP = 0.95f;

    @Option(names = "--min-p", description = "Min-p; 0 disables (default: ${DEFAULT-VALUE}).")
    float minP = 0.05f;

    @Option(names = "--repeat-penalty", description = "Repetition penalty; 1 disables (default: ${DEFAULT-VALUE}).")
    float repeatPenalty = 1.0f;

    @Option(names = "--repeat-last-n", description = "Tokens the repetition penalty looks back (default: ${DEFAULT-VALUE}).")
    int repeatLastN = 64;

    @Option(names = "--seed", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed = 42;

    @Option(names = "--context", description = "Most positions (prompt + generated) to use (default: model's).")
    int context = 0;

    @Option(names = "--chat", description = "Wrap the prompt as a user message with the model's chat template.")
    boolean chat;

    @Option(names = "--system", description = "System message for --chat.")
    String system;

    @Override
    public Integer call() throws Exception
    {
        if (maxTokens < 0)
        {
            throw new IllegalArgumentException("--max-tokens must be >= 0, got " + maxTokens);
        }
        final SamplerConfig samplerConfig =
            new SamplerConfig(temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed);
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        try (ModelOptions.Loaded loaded = modelOptions.load())
        {
            final Tokenizer tokenizer = Tokenizer.fromGguf(loaded.file().metadata());
            final int[] ids;
            if (chat)
            {
                final ChatTemplate template = ChatTemplate.fromMetadata(loaded.file().metadata());
                if (template.isFallback())
                {
                    err.println("note: " + template.describe());
                }
                final List<ChatMessage> messages = new ArrayList<>();
                if (system != null)
                {
                    messages.add(new ChatMessage("system", system));
                }
                messages.add(new ChatMessage("user", prompt));
                // the template writes BOS itself when the model wants it; parse special tokens in its output
                ids = tokenizer.encode(template.render(messages, true), false, true);
            }
            else
            {
                ids = tokenizer.encode(prompt, true, false);
                out.print(prompt);
            }
            final int maxContext = context > 0 ? context : loaded.llama().config().contextLength();
            final StreamingDecoder decoder = new StreamingDecoder(tokenizer);
            final Generator.Result result = new Generator(loaded.llama()).generate(ids, maxTokens, maxContext,
                Sampler.create(samplerConfig), tokenizer::isEndOfGeneration, token ->
                {
                    out.print(decoder.accept(token));
                    out.flush();
                    return true;
                });
            out.print(decoder.flush());
            out.println();
            err.printf("%nprefill: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | stop: %s%n",
                result.promptTokens(), result.prefillTokensPerSecond(), result.tokens().length,
                result.decodeTokensPerSecond(), result.stopReason().name().toLowerCase());
        }
        return 0;
    }
}
