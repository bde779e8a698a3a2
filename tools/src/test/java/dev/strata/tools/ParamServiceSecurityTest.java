package dev.strata.tools;

import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.paramclient.BlockClient;
import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import dev.strata.paramserver.ParamService;
import dev.strata.transport.BlockId;
import dev.strata.transport.Transport;
import dev.strata.transport.TransportContext;
import dev.strata.transport.sbe.Status;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.function.Executable;

import java.net.ConnectException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 15's security defaults: the admin API listens on 127.0.0.1 unless told otherwise; with a token, nothing but
 * health and metrics is readable without one; a read-only node token reads and holds leases and nothing else;
 * {@code --open-reads} opens reads only; the CLI takes its token from a file.
 */
class ParamServiceSecurityTest
{
    private static final String ADMIN = "admin-token-1";
    private static final String READ = "node-token-1";
    private static final long TIMEOUT = TimeUnit.SECONDS.toNanos(20);

    @TempDir
    static Path models;

    static Path model;

    @TempDir
    Path data;

    ParamService service;

    @BeforeAll
    static void synthesize() throws Exception
    {
        model = models.resolve("m.gguf");
        SyntheticModel.write(model, SyntheticModel.Shape.parse("dim=128,layers=1,heads=4,kv=2,ffn=384"), GgmlType.F32,
            null, 1);
    }

    @AfterEach
    void stop()
    {
        if (service != null)
        {
            service.close();
        }
    }

    private String launch(final ParamService.Context ctx) throws Exception
    {
        service = ParamService.launch(ctx.dataDir(data));
        final String server = "127.0.0.1:" + service.adminPort();
        assertEquals(0, CliTest.run("model", "upload", model.toString(), "--name", "m", "--server", server,
            "--token", ADMIN).code());
        return server;
    }

    private static void assertStatus(final int status, final Executable call)
    {
        assertEquals(status, assertThrows(ParamClient.ServiceException.class, call).status());
    }

    @Test
    void shouldListenOnLoopbackOnlyByDefault() throws Exception
    {
        launch(new ParamService.Context().token(ADMIN));
        final InetAddress external = externalAddress();
        org.junit.jupiter.api.Assumptions.assumeTrue(external != null, "this host has no non-loopback IPv4 address");
        try (Socket s = new Socket())
        {
            assertThrows(ConnectException.class, () -> s.connect(new InetSocketAddress(external,
                service.adminPort()), 5_000), "the admin port is not reachable on " + external);
        }
    }

    @Test
    void shouldProtectEveryReadByDefaultAndLetTheReadTokenOnlyReadAndLease() throws Exception
    {
        final String server = launch(new ParamService.Context().token(ADMIN).readToken(READ));
        final ParamClient anonymous = new ParamClient(server, null);
        final ParamClient node = new ParamClient(server, READ);
        final ParamClient admin = new ParamClient(server, ADMIN);
        final BlockId block = admin.manifest("m", "stable").manifest().allBlocks().getFirst();

        assertEquals("ok", anonymous.health().status(), "health stays open");
        for (final Executable read : List.<Executable>of(anonymous::models, () -> anonymous.versions("m"),
            () -> anonymous.show("m", "1"), () -> anonymous.manifest("m", "1"), () -> anonymous.getBlock(block),
            anonymous::endpoints))
        {
            assertStatus(401, read);
        }

        // the node token reads and leases
        assertEquals(1, node.show("m", "stable").version());
        assertEquals(block.length(), node.getBlock(block).length);
        assertTrue(node.lease("node-1", "m", 1, 60_000).leases().containsKey("node-1"));
        assertFalse(node.release("node-1", "m", 1).leases().containsKey("node-1"));
        // and nothing else
        for (final Executable write : List.<Executable>of(() -> node.promote("m", 1), () -> node.delete("m", 1),
            node::gc, () -> node.putBlock(block, new byte[(int)block.length()]), () -> node.verify("m", "1"),
            () -> node.beginUpload("m", "a".repeat(64))))
        {
            assertStatus(403, write);
        }
        final CliTest.Run cli = CliTest.run("model", "rm", "m@1", "--server", server, "--token", READ);
        assertEquals(4, cli.code(), cli.err());
        assertTrue(cli.err().contains("read-only"), cli.err());

        // block pulls over Aeron: refused without a token, served with the node token
        final ServiceInfo.Endpoints endpoints = admin.endpoints();
        try (Transport ipc = Transport.launch(new TransportContext().embeddedDriver(false)
            .aeronDirectory(endpoints.aeronDir())))
        {
            final BlockClient blocks = BlockClient.connect(ipc.aeron(), endpoints.ipcChannel(), endpoints.streamId(),
                null, TIMEOUT);
            assertEquals(Status.UNAUTHORIZED, assertThrows(BlockClient.FetchException.class,
                () -> blocks.fetch("m@1", List.of(block), TIMEOUT)).status());
            assertEquals(1, blocks.token(READ).fetch("m@1", List.of(block), TIMEOUT).size());
            blocks.close();
        }
    }

    @Test
    void shouldOpenReadsOnlyWhenAsked() throws Exception
    {
        final String server = launch(new ParamService.Context().token(ADMIN).openReads(true));
        final ParamClient anonymous = new ParamClient(server, null);
        assertEquals(1, anonymous.models().size());
        assertEquals(1, anonymous.manifest("m", "stable").version());
        assertStatus(401, () -> anonymous.delete("m", 1));
    }

    @Test
    void shouldTakeTheTokenFromAFile() throws Exception
    {
        final String server = launch(new ParamService.Context().token(ADMIN));
        final Path file = data.resolveSibling(data.getFileName() + "-token");
        Files.writeString(file, ADMIN + "\n");
        final CliTest.Run list = CliTest.run("model", "list", "--server", server, "--token-file", file.toString());
        assertEquals(0, list.code(), list.err());
        assertTrue(list.out().contains("m "), list.out());
        final CliTest.Run missing = CliTest.run("model", "list", "--server", server, "--token-file",
            file + ".absent");
        assertTrue(missing.code() != 0, missing.err());
        assertTrue(missing.err().contains("cannot read the token file"), missing.err());
    }

    private static InetAddress externalAddress() throws Exception
    {
        for (final NetworkInterface nif : Collections.list(NetworkInterface.getNetworkInterfaces()))
        {
            if (nif.isUp() && !nif.isLoopback())
            {
                for (final InetAddress a : Collections.list(nif.getInetAddresses()))
                {
                    if (a instanceof Inet4Address)
                    {
                        return a;
                    }
                }
            }
        }
        return null;
    }
}
