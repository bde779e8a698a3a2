package dev.strata.tiering;

import dev.strata.transport.BlockId;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Chronicle Map block index after a process was killed (SIGKILL) while it held one of the map's segment locks:
 * the next open must not spin on the dead process's lock (Chronicle's 60 s dead-lock timeout, then
 * {@code InterProcessDeadLockException} on every start) but rebuild the index, which reconcile fills from the tiers.
 */
class BlockIndexCrashTest
{
    @TempDir
    Path dir;

    static BlockId id(final int i)
    {
        return BlockId.of(MemorySegment.ofArray(("block-" + i).getBytes(StandardCharsets.US_ASCII)));
    }

    @Test
    @Timeout(value = 50, unit = TimeUnit.SECONDS) // on a stale lock Chronicle spins 60 s before it fails
    void shouldRebuildAnIndexLeftLockedByAKilledProcess() throws Exception
    {
        final Path file = dir.resolve("block-index.dat");
        final int blocks = 200;
        final List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElseThrow());
        command.addAll(CrashSafetyTest.stackJvmFlags());
        command.add("-Xmx128m");
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(IndexLockHolder.class.getName());
        command.add(file.toString());
        command.add(Integer.toString(blocks));
        final Process child = new ProcessBuilder(command).redirectErrorStream(true).start();
        try
        {
            final BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(),
                StandardCharsets.UTF_8));
            final StringBuilder log = new StringBuilder();
            String line;
            while ((line = out.readLine()) != null && !line.equals("LOCKED"))
            {
                log.append(line).append('\n');
            }
            assertNotNull(line, "the child did not take the lock:\n" + log);
        }
        finally
        {
            child.destroyForcibly(); // SIGKILL: the lock stays set in the file
            assertTrue(child.waitFor(30, TimeUnit.SECONDS));
        }

        final Path objects = dir.resolve("objects");
        try (DirectoryObjectTier object = new DirectoryObjectTier(objects))
        {
            for (int i = 0; i < blocks; i++)
            {
                final MemorySegment content = MemorySegment.ofArray(("block-" + i).getBytes(StandardCharsets.US_ASCII));
                object.put(id(i), content);
            }
            try (BlockIndex index = BlockIndex.open(file, blocks))
            {
                assertNotNull(index.rebuiltBecause(), "a file left by a killed process is not trusted");
                index.reconcile(null, object);
                assertEquals(blocks, index.size());
                index.stored(id(0), BlockIndex.SSD_BIT); // the key whose segment the dead process held
                assertEquals(BlockIndex.OBJECT_BIT | BlockIndex.SSD_BIT, index.get(id(0)).tiers());
            }
            try (BlockIndex index = BlockIndex.open(file, blocks))
            {
                assertEquals(null, index.rebuiltBecause(), "a cleanly closed index is reopened as it is");
                assertEquals(blocks, index.size());
            }
        }
        assertTrue(Files.size(file) < 64L << 20, "sized to its content: " + Files.size(file) + " bytes");
    }
}
