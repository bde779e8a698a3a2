package dev.strata.transport;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Driver directories of processes that are gone (killed with SIGKILL) are removed; a live process's are kept. */
class StaleDirectoryTest
{
    @TempDir
    Path base;

    @Test
    void shouldRemoveTheDirectoriesOfProcessesThatAreGone() throws Exception
    {
        final Process gone = new ProcessBuilder("true").start();
        assertTrue(gone.waitFor(30, TimeUnit.SECONDS));
        final Path dead = Files.createDirectories(base.resolve(TransportContext.DIR_PREFIX + gone.pid() + "-dead"));
        Files.write(dead.resolve("cnc.dat"), new byte[4096]);
        final Path live = Files.createDirectories(base.resolve(TransportContext.DIR_PREFIX +
            ProcessHandle.current().pid() + "-live"));
        final Path legacy = Files.createDirectories(base.resolve(TransportContext.DIR_PREFIX +
            "0f1e2d3c-aaaa-bbbb-cccc-000000000000"));
        Files.setLastModifiedTime(legacy, FileTime.fromMillis(System.currentTimeMillis() - 3_600_000));
        final Path other = Files.createDirectories(base.resolve("aeron-someone-else"));

        assertEquals(2, TransportContext.removeStaleDirectories(base));
        assertFalse(Files.exists(dead), "its process is gone");
        assertFalse(Files.exists(legacy), "an old directory with no driver");
        assertTrue(Files.exists(live), "this process runs");
        assertTrue(Files.exists(other), "not ours");
    }

    @Test
    void shouldNameTheDefaultDirectoryForThisProcess()
    {
        final String dir = new TransportContext().aeronDirectory(null).conclude().aeronDirectory();
        assertTrue(Path.of(dir).getFileName().toString().startsWith(TransportContext.DIR_PREFIX +
            ProcessHandle.current().pid() + "-"), dir);
    }
}
