package dev.strata.tools;

import picocli.CommandLine;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import picocli.CommandLine.Command;

/**
 * The {@code strata} command line. Errors that a user can fix (a bad file, a bad option) print one clear line
 * on stderr and exit with status 1; usage errors exit with status 2.
 */
@Command(
    name = "strata",
    mixinStandardHelpOptions = true,
    version = "strata 0.1.0",
    description = "Strata: a parameter-server inference engine for large language models.",
    subcommands = {
        GenerateCommand.class,
        ServeCommand.class,
        NodeCommand.class,
        NodesCommand.class,
        ChatCommand.class,
        TokenizeCommand.class,
        SynthCommand.class,
        BenchCommand.class,
        ModelCommand.class,
        ParamServerCommand.class,
        TraceCommand.class,
        CommandLine.HelpCommand.class
    })
public final class Main implements Runnable
{
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(final String[] args)
    {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null)
        {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"); // libraries' INFO chatter off
        }
        final PrintWriter out = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out),
            StandardCharsets.UTF_8), true);
        final PrintWriter err = new PrintWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.err),
            StandardCharsets.UTF_8), true);
        System.exit(run(out, err, args));
    }

    /** Runs the CLI with the given output streams and returns its exit code. */
    public static int run(final PrintWriter out, final PrintWriter err, final String... args)
    {
        final CommandLine cli = new CommandLine(new Main());
        cli.setOut(out);
        cli.setErr(err);
        cli.setExecutionExceptionHandler((ex, commandLine, parseResult) ->
        {
            commandLine.getErr().println("error: " + describe(ex));
            if (System.getenv("STRATA_DEBUG") != null)
            {
                ex.printStackTrace(commandLine.getErr());
            }
            commandLine.getErr().flush();
            return exitCode(ex);
        });
        final int code = cli.execute(args);
        out.flush();
        err.flush();
        return code;
    }

    /** 1 by default; for the parameter service's answers: 3 not found, 4 token, 5 conflict, 6 unreachable. */
    static int exitCode(final Throwable ex)
    {
        if (ex instanceof dev.strata.paramclient.ParamClient.ServiceException s)
        {
            return switch (s.status())
            {
                case 0 -> 6;
                case 401, 403 -> 4;
                case 404 -> 3;
                case 409 -> 5;
                default -> 1;
            };
        }
        return 1;
    }

    private static String describe(final Throwable ex)
    {
        if (ex instanceof java.io.UncheckedIOException u && u.getCause() != null)
        {
            return describe(u.getCause());
        }
        if (ex instanceof java.nio.file.NoSuchFileException e)
        {
            return "no such file: " + e.getFile();
        }
        if (ex instanceof java.nio.file.AccessDeniedException e)
        {
            return "permission denied: " + e.getFile();
        }
        final String message = ex.getMessage();
        return message == null ? ex.getClass().getSimpleName() : message;
    }

    @Override
    public void run()
    {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing command");
    }
}
