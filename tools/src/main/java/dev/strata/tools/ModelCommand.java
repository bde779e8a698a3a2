package dev.strata.tools;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.transport.BlockId;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintWriter;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code strata model ...}: the operator's commands against a running parameter service. Exit codes a script can
 * rely on: 0 done, 1 failed, 2 bad usage, 3 not found, 4 wrong or missing token, 5 conflict with the version's
 * state (or lost blocks on verify), 6 service unreachable.
 */
@Command(name = "model", description = "Upload and manage model versions on a parameter service.",
    subcommands = {
        ModelCommand.Upload.class, ModelCommand.ListModels.class, ModelCommand.Versions.class,
        ModelCommand.Show.class, ModelCommand.Promote.class, ModelCommand.Canary.class,
        ModelCommand.Rollback.class, ModelCommand.Remove.class, ModelCommand.Verify.class,
        ModelCommand.Export.class, ModelCommand.Gc.class
    })
final class ModelCommand implements Runnable
{
    static final ObjectMapper JSON = new ObjectMapper();

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run()
    {
        throw new CommandLine.ParameterException(spec.commandLine(),
            "missing command (upload, list, versions, show, promote, canary, rollback, rm, verify, export)");
    }

    /** Options every client command takes. */
    static final class ServerOptions
    {
        @Option(names = "--server", paramLabel = "HOST:PORT",
            description = "Admin address of the parameter service (default: $STRATA_SERVER, else localhost:7070).")
        String server;

        @Option(names = "--token", paramLabel = "TOKEN", description = "Bearer token (default: $STRATA_TOKEN, " +
            "else the file named by $STRATA_TOKEN_FILE).")
        String token;

        @Option(names = "--token-file", paramLabel = "FILE", description = "Read the token from this file.")
        Path tokenFile;

        ParamClient client()
        {
            final String s = server != null ? server :
                System.getenv().getOrDefault("STRATA_SERVER", "localhost:7070");
            return new ParamClient(s, Tokens.resolve(token, tokenFile, "STRATA_TOKEN"));
        }
    }

    /** {@code NAME}, {@code NAME@N} or {@code NAME:label}. */
    record Ref(String model, String version)
    {
        static Ref parse(final String text)
        {
            final int at = text.lastIndexOf('@');
            final int colon = text.lastIndexOf(':');
            if (at > 0)
            {
                return new Ref(text.substring(0, at), text.substring(at + 1));
            }
            if (colon > 0)
            {
                return new Ref(text.substring(0, colon), text.substring(colon + 1));
            }
            return new Ref(text, "stable");
        }

        /** The version number, resolving a label through the service. */
        int number(final ParamClient client) throws java.io.IOException
        {
            if (version.matches("[0-9]+"))
            {
                return Integer.parseInt(version);
            }
            return client.show(model, version).version();
        }

        @Override
        public String toString()
        {
            return model + "@" + version;
        }
    }

    abstract static class Base implements Callable<Integer>
    {
        @CommandLine.Mixin
        ServerOptions serverOptions = new ServerOptions();

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        PrintWriter out()
        {
            return spec.commandLine().getOut();
        }

        PrintWriter err()
        {
            return spec.commandLine().getErr();
        }

        ParamClient client()
        {
            return serverOptions.client();
        }
    }

    @Command(name = "upload", description = "Upload a GGUF model as a new version: only blocks the service lacks " +
        "are sent; an interrupted upload of the same file resumes.")
    static final class Upload extends Base
    {
        @Parameters(index = "0", paramLabel = "FILE.gguf")
        Path file;

        @Option(names = "--name", required = true, description = "Model name.")
        String name;

        @Option(names = "--label", description = "After commit: stable (promote) or canary.")
        String label;

        @Option(names = "--canary-weight", defaultValue = "10", description = "Percent for --label canary.")
        int canaryWeight;

        @Option(names = "--limit-rate", paramLabel = "BYTES", description = "Upload at most this many bytes/s " +
            "(K, M, G suffixes).")
        String limitRate;

        @Option(names = "--json", description = "Print a JSON summary.")
        boolean json;

        @Option(names = "--parallel", defaultValue = "4", description = "Blocks in flight (default ${DEFAULT-VALUE}).")
        int parallel;

        @Override
        public Integer call() throws Exception
        {
            if (parallel < 1 || parallel > 64)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--parallel is 1..64");
            }
            if (label != null && !label.equals("stable") && !label.equals("canary"))
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--label is stable or canary, not " + label);
            }
            if (canaryWeight < 1 || canaryWeight > 99)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--canary-weight is 1..99 percent, not " +
                    canaryWeight);
            }
            final long rate = limitRate == null ? 0 : Sizes.parse(limitRate);
            final ParamClient client = client();
            try (GgufFile gguf = GgufFile.open(file))
            {
                final ModelImporter.Plan plan = ModelImporter.plan(gguf, name);
                final byte[] manifest = plan.manifest().encode();
                final ServiceInfo.UploadBegun begun = client.beginUpload(name, BlockId.of(manifest).hex());
                final int version = begun.version();
                final boolean resumed = begun.resumed();
                final ProgressBar bar = new ProgressBar(err(), !json);
                final long start = System.nanoTime();
                final ModelImporter.Result result = ModelImporter.upload(plan, new ModelImporter.BlockSink()
                {
                    final java.util.concurrent.atomic.AtomicLong sent = new java.util.concurrent.atomic.AtomicLong();

                    @Override
                    public List<BlockId> missing(final List<BlockId> ids) throws java.io.IOException
                    {
                        return client.missing(ids);
                    }

                    @Override
                    public void put(final BlockId id, final MemorySegment bytes) throws java.io.IOException
                    {
                        client.putBlock(id, bytes.toArray(ValueLayout.JAVA_BYTE));
                        final long s = sent.addAndGet(id.length());
                        if (rate > 0)
                        {
                            final long due = start + (long)(s * 1e9 / rate);
                            final long wait = due - System.nanoTime();
                            if (wait > 0)
                            {
                                try
                                {
                                    Thread.sleep(wait / 1_000_000, (int)(wait % 1_000_000));
                                }
                                catch (final InterruptedException ex)
                                {
                                    Thread.currentThread().interrupt();
                                    throw new java.io.InterruptedIOException("upload interrupted");
                                }
                            }
                        }
                    }
                }, bar::update, rate > 0 ? 1 : parallel);
                bar.finish();
                // a version committed meanwhile by a concurrent upload of the same file commits again as a no-op
                final ServiceInfo.Version committed = client.commit(name, version, manifest);
                String note = "";
                if ("stable".equals(label))
                {
                    client.promote(name, version);
                }
                else if ("canary".equals(label))
                {
                    if (committed.state().equals("active"))
                    {
                        note = "; not made a canary: it is the model's first version, so it is the active one";
                    }
                    else
                    {
                        client.canary(name, version, canaryWeight);
                    }
                }
                // report the state the version is in now: a concurrent upload may have promoted another after it
                final String state = client.show(name, String.valueOf(version)).state();
                if ("stable".equals(label) && !state.equals("active"))
                {
                    note = "; promoted, but another version was promoted after it: " + name + "@" + version + " is " +
                        state + " and " + name + " resolves to " + name + "@" + client.show(name, "stable").version();
                }
                else if (label == null && state.equals("active") && !begun.committed())
                {
                    note = "; active: the model's first version, so '" + name + "' resolves to it";
                }
                if (json)
                {
                    final Map<String, Object> summary = new LinkedHashMap<>();
                    summary.put("model", name);
                    summary.put("version", version);
                    summary.put("blocks_total", result.blocksTotal());
                    summary.put("blocks_new", result.blocksNew());
                    summary.put("bytes_new", result.bytesNew());
                    summary.put("resumed", resumed && !begun.committed());
                    summary.put("already_committed", begun.committed());
                    summary.put("label", label);
                    summary.put("state", state);
                    if (!note.isEmpty())
                    {
                        summary.put("note", note.substring(2));
                    }
                    out().println(JSON.writeValueAsString(summary));
                }
                else if (begun.committed())
                {
                    out().printf("%s@%d has this file's manifest already (%s): %d blocks, %d were missing and sent " +
                        "(%s)%s%n", name, version, state, result.blocksTotal(), result.blocksNew(),
                        Sizes.format(result.bytesNew()), result.blocksNew() > 0 ? ", the version is healed" : "");
                }
                else
                {
                    out().printf("%s@%d committed (%s): %d blocks, %d new (%s)%s%s%n", name, version, state,
                        result.blocksTotal(), result.blocksNew(), Sizes.format(result.bytesNew()),
                        resumed ? ", resumed an interrupted upload" : "", note);
                }
            }
            return 0;
        }
    }

    @Command(name = "list", description = "Models with their stable and canary versions.")
    static final class ListModels extends Base
    {
        @Option(names = "--json")
        boolean json;

        @Override
        public Integer call() throws Exception
        {
            final List<ServiceInfo.ModelSummary> models = client().models();
            if (json)
            {
                out().println(JSON.writeValueAsString(models));
                return 0;
            }
            out().printf("%-32s %8s %8s %8s  %s%n", "MODEL", "VERSIONS", "STABLE", "CANARY", "UPLOADING");
            for (final ServiceInfo.ModelSummary m : models)
            {
                out().printf("%-32s %8d %8s %8s  %s%n", m.name(), m.versions(), m.stable() == null ? "-" : m.stable(),
                    m.canary() == null ? "-" : m.canary(), m.uploading() == null || m.uploading().isEmpty() ? "-" :
                        m.uploading().stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(",")));
            }
            return 0;
        }
    }

    @Command(name = "versions", description = "Every version of a model and its state.")
    static final class Versions extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME")
        String name;

        @Option(names = "--json")
        boolean json;

        @Override
        public Integer call() throws Exception
        {
            final List<ServiceInfo.Version> versions = client().versions(name);
            if (json)
            {
                out().println(JSON.writeValueAsString(versions));
                return 0;
            }
            out().printf("%-8s %-10s %-8s %s%n", "VERSION", "STATE", "CANARY", "MANIFEST");
            for (final ServiceInfo.Version v : versions)
            {
                out().printf("%-8d %-10s %-8s %s%n", v.version(), v.state(),
                    v.canaryWeight() != null ? v.canaryWeight() + "%" : "-", v.manifest());
            }
            return 0;
        }
    }

    @Command(name = "show", description = "One version: state, manifest digest, tensors, bytes, blocks, leases.")
    static final class Show extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME[@V|:label]")
        String ref;

        @Option(names = "--json")
        boolean json;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            final JsonNode v = JSON.valueToTree(client().show(r.model(), r.version()));
            if (json)
            {
                out().println(v);
                return 0;
            }
            v.properties().forEach(e -> out().printf("%-14s %s%n", e.getKey() + ":", e.getKey().equals("bytes") ?
                Sizes.format(e.getValue().asLong()) : e.getValue().isTextual() ? e.getValue().asText() : e.getValue()));
            return 0;
        }
    }

    @Command(name = "promote", description = "Make a version the active one (label stable); the previous is retired.")
    static final class Promote extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME@V")
        String ref;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            final ParamClient c = client();
            final ServiceInfo.Version v = c.promote(r.model(), r.number(c));
            out().printf("%s@%d is %s%n", r.model(), v.version(), v.state());
            return 0;
        }
    }

    @Command(name = "canary", description = "Serve a committed version to a share of requests (label canary).")
    static final class Canary extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME@V")
        String ref;

        @Option(names = "--weight", required = true, description = "Percent of requests, 1..99.")
        int weight;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            final ParamClient c = client();
            final ServiceInfo.Version v = c.canary(r.model(), r.number(c), weight);
            out().printf("%s@%d is canary at %d%%%n", r.model(), v.version(), v.canaryWeight());
            return 0;
        }
    }

    @Command(name = "gc", description = "Delete every stored block no committed version uses (refused while an " +
        "upload is in progress). Deleting a version already collects its own blocks; this sweeps what is left.")
    static final class Gc extends Base
    {
        @Override
        public Integer call() throws Exception
        {
            final ServiceInfo.GcReport r = client().gc();
            out().printf("%d of %d stored blocks deleted%n", r.blocksDeleted(), r.blocksStored());
            return 0;
        }
    }

    @Command(name = "rollback", description = "Reactivate the most recently retired version.")
    static final class Rollback extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME")
        String name;

        @Override
        public Integer call() throws Exception
        {
            final ServiceInfo.Version v = client().rollback(name);
            out().printf("%s@%d is %s%n", name, v.version(), v.state());
            return 0;
        }
    }

    @Command(name = "rm", description = "Delete a version (refused while a compute node holds a lease on it); " +
        "its blocks that no other version uses are deleted from the store.")
    static final class Remove extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME@V")
        String ref;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            if (!r.version().matches("[0-9]+"))
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "rm needs an explicit version number " +
                    "(NAME@N), not a label");
            }
            final ServiceInfo.Version v = client().delete(r.model(), Integer.parseInt(r.version()));
            out().printf("%s@%d is %s%n", r.model(), v.version(), v.state());
            return 0;
        }
    }

    @Command(name = "verify", description = "Re-check every block of a version in every tier; bad copies are " +
        "rewritten from a good one. Exit 5 when a block has no good copy.")
    static final class Verify extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME[@V|:label]")
        String ref;

        @Option(names = "--json")
        boolean json;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            final ServiceInfo.VerifyReport report = client().verify(r.model(), r.version());
            final int lost = report.lost().size();
            if (json)
            {
                out().println(JSON.writeValueAsString(report));
            }
            else
            {
                out().printf("%s: %d blocks checked, %d good, %d repaired, %d lost%n", r, report.blocks(),
                    report.good(), report.repaired(), lost);
                report.lost().forEach(id -> out().println("lost: " + id));
            }
            if (lost > 0)
            {
                err().printf("%d block(s) of %s had no good copy in any tier: they were quarantined (dropped) and are " +
                    "missing now. To heal the version, upload the file it was made from again: strata model upload " +
                    "FILE.gguf --name %s (only the missing blocks are sent; the version is not duplicated)%n", lost, r,
                    r.model());
            }
            return lost == 0 ? 0 : 5;
        }
    }

    @Command(name = "export", description = "Write a version back as a GGUF file with the uploaded tensors.")
    static final class Export extends Base
    {
        @Parameters(index = "0", paramLabel = "NAME[@V|:label]")
        String ref;

        @Option(names = "--out", required = true, paramLabel = "FILE.gguf")
        Path out;

        @Override
        public Integer call() throws Exception
        {
            final Ref r = Ref.parse(ref);
            final ParamClient c = client();
            final ParamClient.PinnedManifest m = c.manifest(r.model(), r.version());
            ModelImporter.export(m.manifest(), id -> MemorySegment.ofArray(c.getBlock(id)), out);
            out().printf("%s@%d written to %s%n", r.model(), m.version(), out);
            return 0;
        }
    }
}
