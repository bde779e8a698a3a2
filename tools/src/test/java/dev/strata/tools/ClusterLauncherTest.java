package dev.strata.tools;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Where `strata serve` puts its own process: with the prefill nodes, only when the split's nodes are all pinned. */
class ClusterLauncherTest
{
    @Test
    void shouldPutTheRouterOnThePrefillNodesCpusOfAPinnedSplit()
    {
        assertEquals("0", ClusterLauncher.routerCpus(List.of("prefill", "decode"), new String[]{"0", "1"}));
        assertEquals("0-1,2", ClusterLauncher.routerCpus(List.of("prefill", "prefill", "decode"),
            new String[]{"0-1", "2", "3"}));
        assertEquals("4", ClusterLauncher.routerCpus(List.of("decode", "both", "prefill"),
            new String[]{"0", "1-3", "4"}));
    }

    @Test
    void shouldAcceptAutoNoneOrACpuListForTheRouter()
    {
        assertEquals("auto", ClusterLauncher.routerSpec(" Auto"));
        assertEquals("none", ClusterLauncher.routerSpec("none"));
        assertEquals("0-1,3", ClusterLauncher.routerSpec("0-1,3"));
        final IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> ClusterLauncher.routerSpec("first"));
        assertTrue(e.getMessage().contains("'first' is not auto, none or a CPU list"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ClusterLauncher.routerSpec("-1"));
    }

    @Test
    void shouldLeaveTheRouterUnpinnedWithoutAPinnedSplit()
    {
        assertNull(ClusterLauncher.routerCpus(List.of("prefill", "decode"), new String[]{null, null}), "not pinned");
        assertNull(ClusterLauncher.routerCpus(List.of("prefill", "decode"), new String[]{"0", null}), "one unpinned");
        assertNull(ClusterLauncher.routerCpus(List.of("both", "both"), new String[]{"0", "1"}), "colocated");
        assertNull(ClusterLauncher.routerCpus(List.of("both"), new String[]{null}), "one node");
    }
}
