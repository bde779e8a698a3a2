package dev.strata.paramserver;

import dev.strata.paramclient.ParamClient;
import dev.strata.paramclient.ServiceInfo;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Abandoned uploads are listed, block gc with a message that says what to do, and expire. */
class UploadExpiryTest
{
    @TempDir
    Path data;

    @Test
    void shouldListAnAbandonedUploadAndExpireItSoThatGcRuns() throws Exception
    {
        final long expiryMillis = 200;
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token("expiry-t")
            .uploadExpiryMillis(expiryMillis)))
        {
            final ParamClient client = new ParamClient("127.0.0.1:" + service.adminPort(), "expiry-t");
            final long begun = System.nanoTime();
            assertEquals(1, client.beginUpload("m", "a".repeat(64)).version());
            final long answered = System.nanoTime(); // the service noted the upload between begun and answered
            final ServiceInfo.ModelSummary m = client.models().getFirst();
            assertEquals(List.of(1), m.uploading(), "the uncommitted upload is shown");

            if (System.nanoTime() - begun < expiryMillis * 1_000_000 / 2) // not expired yet: gc is refused
            {
                final ParamClient.ServiceException refused = assertThrows(ParamClient.ServiceException.class,
                    client::gc);
                assertEquals(409, refused.status());
                assertTrue(refused.getMessage().contains("strata model rm m@1"), refused.getMessage());
            }
            while (System.nanoTime() - answered <= expiryMillis * 1_000_000) // the clock passes the expiry
            {
                Thread.onSpinWait();
            }
            client.gc();
            assertEquals("deleted", client.versions("m").getFirst().state());
            assertEquals(List.of(), client.models().getFirst().uploading());
        }
    }
}
