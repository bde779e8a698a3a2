package dev.strata.tools;

import dev.strata.client.StrataClient;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code strata chat}: an interactive chat in the terminal against an OpenAI-compatible server, with the
 * conversation's history; the server applies the model's chat template. Ctrl-C stops the reply being written
 * (the server cancels it); Ctrl-C at the prompt, Ctrl-D or {@code /exit} leaves; {@code /reset} forgets the history.
 */
@Command(name = "chat", description = "Chat with a served model in the terminal (strata serve or any " +
    "OpenAI-compatible server).")
final class ChatCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = "--url", defaultValue = "http://127.0.0.1:8080/v1", description = "Base URL of the API " +
        "(default: ${DEFAULT-VALUE}).")
    String url;

    @Option(names = {"-m", "--model"}, description = "Model id (default: the first the server lists).")
    String model;

    @Option(names = "--api-key", description = "Bearer key (default: $STRATA_API_KEY).")
    String apiKey;

    @Option(names = "--system", description = "System message.")
    String system;

    @Option(names = {"-n", "--max-tokens"}, defaultValue = "512", description = "Most tokens per reply (default: " +
        "${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0.7", description = "Sampling temperature (default: " +
        "${DEFAULT-VALUE}).")
    double temperature;

    @Override
    public Integer call() throws Exception
    {
        final PrintWriter out = spec.commandLine().getOut();
        final StrataClient client = StrataClient.builder(url).apiKey(apiKey != null ? apiKey :
            System.getenv("STRATA_API_KEY")).build();
        final String id;
        if (model != null)
        {
            id = model;
        }
        else
        {
            final List<String> models = client.models();
            if (models.isEmpty())
            {
                throw new IllegalStateException(url + " serves no model");
            }
            id = models.get(0);
        }
        final List<StrataClient.Message> history = new ArrayList<>();
        if (system != null)
        {
            history.add(StrataClient.Message.system(system));
        }
        final AtomicReference<StrataClient.Streaming> current = new AtomicReference<>();
        installInterrupt(current);
        out.printf("chatting with %s at %s (/reset forgets, /exit or Ctrl-D leaves, Ctrl-C stops a reply)%n", id, url);
        final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        while (true)
        {
            out.print("> ");
            out.flush();
            final String line = in.readLine();
            if (line == null || line.strip().equals("/exit"))
            {
                out.println();
                return 0;
            }
            if (line.strip().equals("/reset"))
            {
                history.removeIf(m -> !m.role().equals("system"));
                out.println("(history cleared)");
                continue;
            }
            if (line.isBlank())
            {
                continue;
            }
            history.add(StrataClient.Message.user(line));
            final StrataClient.Streaming streaming = new StrataClient.Streaming();
            current.set(streaming);
            final StrataClient.Reply reply;
            try
            {
                reply = client.chatStream(id, history, new StrataClient.Options().maxTokens(maxTokens)
                    .temperature(temperature), text ->
                    {
                        out.print(text);
                        out.flush();
                    }, streaming);
            }
            catch (final StrataClient.ApiException e)
            {
                history.remove(history.size() - 1);
                out.println("error: " + e.getMessage());
                continue;
            }
            finally
            {
                current.set(null);
            }
            out.println(reply.finishReason() == null || reply.finishReason().equals("stop") ? "" :
                " [" + reply.finishReason() + "]");
            history.add(StrataClient.Message.assistant(reply.text()));
        }
    }

    /** Ctrl-C cancels the reply being streamed, or leaves when none is. */
    @SuppressWarnings("removal")
    private static void installInterrupt(final AtomicReference<StrataClient.Streaming> current)
    {
        try
        {
            sun.misc.Signal.handle(new sun.misc.Signal("INT"), signal ->
            {
                final StrataClient.Streaming s = current.get();
                if (s != null)
                {
                    s.cancel();
                }
                else
                {
                    System.exit(130);
                }
            });
        }
        catch (final IllegalArgumentException | UnsupportedOperationException e)
        {
            // no signal handling here: Ctrl-C ends the process as usual
        }
    }
}
