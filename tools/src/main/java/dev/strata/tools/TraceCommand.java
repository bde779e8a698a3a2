package dev.strata.tools;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.strata.prefetch.LayerTrace;
import dev.strata.prefetch.PrefetchSettings;
import dev.strata.prefetch.TraceReplay;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code strata trace ...}: recorded access traces. */
@Command(name = "trace", description = "Recorded access traces.", subcommands = TraceCommand.Replay.class)
final class TraceCommand
{
    /**
     * {@code strata trace replay TRACE --settings ... [--json]}: a what-if replay of a trace written by
     * {@code strata generate --access-trace-out} (or a node of the dashboard) under other settings, next to the
     * recorded run.
     */
    @Command(name = "replay", description = "Replay a recorded access trace through the node's cache and prefetch " +
        "model under other settings; prints the recorded run and each replay side by side.")
    static final class Replay implements Callable<Integer>
    {
        @Parameters(index = "0", paramLabel = "TRACE", description = "A trace from --access-trace-out.")
        Path trace;

        @Option(names = "--settings", paramLabel = "K=V,...", description = "One replay per option: any of " +
            "lookahead=N (0 adaptive), prefetch=true|false, predictor=learned|layer-order|none, budget=SIZE, " +
            "link=BYTES_PER_SECOND (e.g. 1G); unnamed settings are the trace's. Without any: the recorded settings.")
        List<String> settings = new ArrayList<>();

        @Option(names = "--json", description = "JSON output.")
        boolean json;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception
        {
            final PrintWriter out = spec.commandLine().getOut();
            final LayerTrace t = LayerTrace.read(trace);
            final List<LayerTrace.Settings> runs = new ArrayList<>();
            if (settings.isEmpty())
            {
                runs.add(t.settings());
            }
            for (final String s : settings)
            {
                runs.add(parse(t.settings(), s));
            }
            final TraceReplay.Result recorded = TraceReplay.recorded(t);
            final List<TraceReplay.Result> replays = new ArrayList<>();
            for (final LayerTrace.Settings s : runs)
            {
                replays.add(TraceReplay.replay(t, s));
            }
            if (json)
            {
                final Map<String, Object> m = new LinkedHashMap<>();
                m.put("trace", trace.toString());
                m.put("recorded", recorded.fields());
                m.put("replays", replays.stream().map(TraceReplay.Result::fields).toList());
                out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(m));
            }
            else
            {
                out.printf(Locale.ROOT, "%-10s %9s %5s %8s %12s %9s %8s %8s %8s %12s %12s%n", "run", "lookahead",
                    "pref", "budget", "link B/s", "accesses", "hits", "misses", "hit rate", "moved", "stall ms/tok");
                row(out, "recorded", recorded);
                for (int i = 0; i < replays.size(); i++)
                {
                    row(out, "replay " + (i + 1), replays.get(i));
                }
            }
            out.flush();
            return 0;
        }

        private static void row(final PrintWriter out, final String name, final TraceReplay.Result r)
        {
            out.printf(Locale.ROOT, "%-10s %9s %5s %8s %12d %9d %8d %8d %8.3f %12s %12.3f%n", name,
                r.settings().lookahead() == 0 ? "adaptive" : Integer.toString(r.settings().lookahead()),
                r.settings().prefetch(), Sizes.format(r.settings().budgetBytes()), r.settings().linkBytesPerSecond(),
                r.accesses(), r.hits(), r.misses(), r.hitRate(), r.bytesMoved() < 0 ? "-" : Sizes.format(r.bytesMoved()),
                r.stallMillisPerToken());
        }

        /** {@code lookahead=2,budget=500M,...} over the trace's settings. */
        static LayerTrace.Settings parse(final LayerTrace.Settings base, final String spec)
        {
            long budget = base.budgetBytes();
            int lookahead = base.lookahead();
            boolean prefetch = base.prefetch();
            long link = base.linkBytesPerSecond();
            for (final String item : spec.split(","))
            {
                final int eq = item.indexOf('=');
                if (eq < 1)
                {
                    throw new IllegalArgumentException("--settings: '" + item + "' is not key=value");
                }
                final String k = item.substring(0, eq).trim();
                final String v = item.substring(eq + 1).trim();
                switch (k)
                {
                    case "lookahead" ->
                    {
                        lookahead = Integer.parseInt(v);
                        if (lookahead < 0 || lookahead > PrefetchSettings.MAX_LOOKAHEAD)
                        {
                            throw new IllegalArgumentException("--settings: invalid lookahead=" + v + " (0 = adaptive, " +
                                "or 1.." + PrefetchSettings.MAX_LOOKAHEAD + ")");
                        }
                    }
                    case "prefetch" ->
                    {
                        if (!v.equals("true") && !v.equals("false"))
                        {
                            throw new IllegalArgumentException("--settings: invalid prefetch=" + v + " (true or false)");
                        }
                        prefetch = Boolean.parseBoolean(v);
                    }
                    // a dense trace replays layers only: learned and layer-order both prefetch by the layer order
                    case "predictor" -> prefetch = PrefetchSettings.Kind.parse(v) != PrefetchSettings.Kind.NONE;
                    case "budget" -> budget = Sizes.parse(v);
                    case "link" -> link = Sizes.parse(v);
                    default -> throw new IllegalArgumentException("--settings: unknown '" + k + "' (lookahead, " +
                        "prefetch, predictor, budget, link)");
                }
            }
            return base.with(budget, lookahead, prefetch, link);
        }
    }
}
