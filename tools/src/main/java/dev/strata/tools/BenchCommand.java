package dev.strata.tools;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code strata bench ...}: benchmarks that report against limits measured in the same run. */
@Command(name = "bench", description = "Benchmarks.", subcommands = {RuntimeBench.class, BatchBench.class, ServeBench.class, TiersBench.class, TransportBench.class, StreamBench.class, KvTransferBench.class})
final class BenchCommand implements Runnable
{
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run()
    {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing benchmark (runtime, batch, serve, tiers, transport, stream)");
    }
}
