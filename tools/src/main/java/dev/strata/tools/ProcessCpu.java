package dev.strata.tools;

import java.lang.management.ManagementFactory;

/** CPU time of this process, every thread together: what a benchmark's work cost the machine's cores. */
final class ProcessCpu
{
    private ProcessCpu()
    {
    }

    /** Nanoseconds of CPU used by this process so far. */
    static long nanos()
    {
        return ((com.sun.management.OperatingSystemMXBean)ManagementFactory.getOperatingSystemMXBean())
            .getProcessCpuTime();
    }

    /** Cores kept busy on average between {@code cpuStart}/{@code wallStart} (from {@link #nanos()}, nanoTime) and now. */
    static double coresSince(final long cpuStart, final long wallStart)
    {
        return (nanos() - cpuStart) / (double)Math.max(1, System.nanoTime() - wallStart);
    }
}
