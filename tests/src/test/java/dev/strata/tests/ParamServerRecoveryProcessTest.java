package dev.strata.tests;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.gguf.GgufTensorInfo;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.transport.TransportContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15 with real processes: a service killed with SIGKILL leaves no Aeron directory behind once the next one
 * starts; a flipped bit in the SSD tier's files does not stop the next start, which serves every block from the
 * object tier.
 */
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class ParamServerRecoveryProcessTest
{
    private static final String TOKEN = "recovery-token";

    @TempDir
    Path dir;

    private StrataProcesses strata;

    @AfterEach
    void stop()
    {
        if (strata != null)
        {
            strata.close();
        }
    }

    private static List<Path> driverDirsOf(final Path base, final long pid) throws IOException
    {
        try (Stream<Path> s = Files.list(base))
        {
            return s.filter(p -> p.getFileName().toString().startsWith(TransportContext.DIR_PREFIX + pid + "-"))
                .toList();
        }
    }

    @Test
    void shouldRemoveTheAeronDirectoryOfAKilledServiceAtTheNextStart() throws Exception
    {
        final Path shm = Path.of("/dev/shm");
        Assumptions.assumeTrue(Files.isDirectory(shm), "no /dev/shm");
        strata = new StrataProcesses(dir, TOKEN);
        final Path data = dir.resolve("data");
        final Path log = dir.resolve("server.log");

        final StrataProcesses.Server first = strata.startServer(data, log, null);
        final long firstPid = first.process().pid();
        assertEquals(1, driverDirsOf(shm, firstPid).size(), "the driver directory is named for its process");
        StrataProcesses.sigkill(first.process());
        assertEquals(1, driverDirsOf(shm, firstPid).size(), "a killed process cannot remove its own directory");

        final StrataProcesses.Server second = strata.startServer(data, log, null);
        assertTrue(driverDirsOf(shm, firstPid).isEmpty(), "the next start removed the dead process's directory");
        final long secondPid = second.process().pid();
        assertEquals(1, driverDirsOf(shm, secondPid).size());
        StrataProcesses.sigterm(second.process());
        assertTrue(driverDirsOf(shm, secondPid).isEmpty(), "a stopped service removes its own");
    }

    @Test
    void shouldStartAndServeEveryBlockWhenTheSsdTiersFilesAreDamaged() throws Exception
    {
        strata = new StrataProcesses(dir, TOKEN);
        final Path model = dir.resolve("model.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=512,layers=2,heads=8,kv=4,ffn=1536"),
            GgmlType.F32, null, 3);
        final Path data = dir.resolve("data");
        final Path log = dir.resolve("server.log");
        StrataProcesses.Server server = strata.startServer(data, log, dir.resolve("aeron-1"));
        assertEquals(0, strata.cli(server.address(), "model", "upload", model.toString(), "--name", "m").code());
        // reading every block promotes it into the SSD tier
        assertEquals(0, strata.cli(server.address(), "model", "export", "m@1", "--out",
            dir.resolve("first.gguf").toString()).code());
        StrataProcesses.sigkill(server.process());
        // the restart recovers RocksDB's write-ahead log into SST and blob files
        server = strata.startServer(data, log, dir.resolve("aeron-2"));
        StrataProcesses.sigkill(server.process());

        assertTrue(flipByteInEach(data.resolve("ssd"), ".blob") > 0, "the SSD tier holds blob files:\n" +
            StrataProcesses.read(log));
        server = strata.startServer(data, log, dir.resolve("aeron-3"));
        final StrataProcesses.Run verify = strata.cli(server.address(), "model", "verify", "m@1");
        assertEquals(0, verify.code(), verify.out() + verify.err());
        final Path exported = dir.resolve("exported.gguf");
        assertEquals(0, strata.cli(server.address(), "model", "export", "m@1", "--out", exported.toString()).code());
        assertTensorsEqual(model, exported);

        // a database RocksDB cannot open at all is moved aside and the service starts with an empty SSD tier
        StrataProcesses.sigkill(server.process());
        try (Stream<Path> s = Files.list(data.resolve("ssd")))
        {
            for (final Path p : s.filter(p -> p.getFileName().toString().startsWith("MANIFEST")).toList())
            {
                Files.write(p, new byte[]{1, 2, 3});
            }
        }
        server = strata.startServer(data, log, dir.resolve("aeron-4"));
        assertTrue(StrataProcesses.read(log).contains("moved it aside"), StrataProcesses.read(log));
        assertEquals(0, strata.cli(server.address(), "model", "verify", "m@1").code());
        final Path again = dir.resolve("again.gguf");
        assertEquals(0, strata.cli(server.address(), "model", "export", "m@1", "--out", again.toString()).code());
        assertTensorsEqual(model, again);
        try (Stream<Path> s = Files.list(data))
        {
            assertTrue(s.anyMatch(p -> p.getFileName().toString().startsWith("ssd.damaged-")));
        }
        assertFalse(Files.isDirectory(data.resolve("ssd.damaged-0")));
    }

    /** Flips one byte in the middle of each non-empty file whose name ends with {@code suffix}. */
    static int flipByteInEach(final Path dir, final String suffix) throws IOException
    {
        final List<Path> files;
        try (Stream<Path> s = Files.list(dir))
        {
            files = s.filter(p -> p.getFileName().toString().endsWith(suffix) && p.toFile().length() > 0).toList();
        }
        for (final Path f : files)
        {
            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, StandardOpenOption.WRITE))
            {
                final long at = ch.size() / 2;
                final ByteBuffer b = ByteBuffer.allocate(1);
                ch.read(b, at);
                ch.write(ByteBuffer.wrap(new byte[]{(byte)(b.get(0) ^ 0x08)}), at);
            }
        }
        return files.size();
    }

    static void assertTensorsEqual(final Path expected, final Path actual) throws IOException
    {
        try (GgufFile a = GgufFile.open(expected); GgufFile b = GgufFile.open(actual))
        {
            assertEquals(a.tensors().keySet(), b.tensors().keySet());
            for (final GgufTensorInfo t : a.tensors().values())
            {
                assertEquals(-1, a.tensorData(t).mismatch(b.tensorData(b.tensor(t.name()))), t.name());
            }
        }
    }
}
