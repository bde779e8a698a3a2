package dev.strata.paramserver;

import dev.strata.paramclient.Manifest;
import dev.strata.paramclient.ParamClient;
import dev.strata.transport.BlockId;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Slow uploads do not starve the admin API: with more stalled authenticated upload bodies than the API has threads,
 * health checks, lease renewals and reads are still answered, one more upload is answered 503 at once, and a body
 * that stops arriving is answered 408 and its slot freed after the body time limit.
 */
class SlowUploadTest
{
    private static final String TOKEN = "slow-token";

    @TempDir
    Path data;

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void shouldKeepHealthLeasesAndReadsAnsweredWhileSlowUploadsHoldEverySlot() throws Exception
    {
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token(TOKEN)
            .maxBodyMillis(8_000)))
        {
            final ParamClient client = new ParamClient("127.0.0.1:" + service.adminPort(), TOKEN);
            final byte[] block = new byte[4096];
            new Random(5).nextBytes(block);
            final BlockId id = BlockId.of(block);
            final byte[] encoded = new Manifest("m", id, List.of()).encode();
            final int version = client.beginUpload("m", BlockId.of(encoded).hex()).version();
            client.putBlock(id, block);
            client.commit("m", version, encoded);

            // 40 authenticated uploads that send their headers and a few bytes of a 1 MB body, then stall
            final List<Socket> slow = new ArrayList<>();
            try
            {
                final BlockId big = new BlockId(new byte[BlockId.DIGEST_BYTES], 1 << 20);
                for (int i = 0; i < 40; i++)
                {
                    final Socket s = new Socket("127.0.0.1", service.adminPort());
                    slow.add(s);
                    final OutputStream out = s.getOutputStream();
                    out.write(("PUT /v1/blocks/" + big + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN +
                        "\r\nContent-Length: " + big.length() + "\r\n\r\nabc").getBytes(StandardCharsets.US_ASCII));
                    out.flush();
                }
                // wait until the slow uploads hold threads (the admin API's busy threads, a gauge)
                final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (service.metrics().get("strata.admin.threads.busy").gauge().value() < 16)
                {
                    assertTrue(System.nanoTime() < deadline, "the slow uploads were not dispatched");
                    Thread.onSpinWait();
                    Thread.yield();
                }
                // the service still answers what nodes and operators need, in well under the body time limit
                final java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
                final java.net.http.HttpResponse<String> health = http.send(java.net.http.HttpRequest.newBuilder(
                    java.net.URI.create("http://127.0.0.1:" + service.adminPort() + "/health"))
                    .timeout(java.time.Duration.ofSeconds(5)).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
                assertEquals(200, health.statusCode());
                assertTrue(client.lease("node-1", "m", version, 60_000).leases().containsKey("node-1"));
                assertEquals(4096, client.getBlock(id).length);
                final ParamClient.ServiceException busy = org.junit.jupiter.api.Assertions.assertThrows(
                    ParamClient.ServiceException.class, () -> client.commit("m", version, encoded));
                assertEquals(503, busy.status(), busy.getMessage());

                // past the body time limit the stalled uploads are answered 408 and closed
                for (final Socket s : slow)
                {
                    final InputStream in = s.getInputStream();
                    final String answer = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
                    assertTrue(answer.startsWith("HTTP/1.1 408") || answer.startsWith("HTTP/1.1 503"), answer);
                }
            }
            finally
            {
                for (final Socket s : slow)
                {
                    s.close();
                }
            }
            assertEquals(version, client.commit("m", version, encoded).version(), "slots are free again");
        }
    }
}
