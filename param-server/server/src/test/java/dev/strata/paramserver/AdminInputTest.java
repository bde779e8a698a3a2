package dev.strata.paramserver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue 15's smaller items: every error is JSON (Jetty's own 400 and 414 too), names are decoded, data is private. */
class AdminInputTest
{
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    /** Sends a raw request and returns the status line and the body. */
    private static String[] raw(final int port, final String request) throws Exception
    {
        try (Socket s = new Socket("127.0.0.1", port))
        {
            final OutputStream out = s.getOutputStream();
            out.write(request.getBytes(StandardCharsets.UTF_8));
            out.flush();
            final InputStream in = s.getInputStream();
            final String answer = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            final int split = answer.indexOf("\r\n\r\n");
            return new String[]{answer.substring(0, answer.indexOf("\r\n")), answer.substring(split + 4),
                answer.substring(0, split)};
        }
    }

    @Test
    void shouldAnswerEveryErrorAsJsonAndShowNamesDecodedAndKeepTheDataDirectoryPrivate() throws Exception
    {
        final Path data = dir.resolve("data");
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(data).token("t0ken-x")))
        {
            final int port = service.adminPort();
            final String[] tooLong = raw(port, "GET /v1/models/" + "a".repeat(20_000) + " HTTP/1.1\r\nHost: x\r\n" +
                "Connection: close\r\n\r\n");
            assertTrue(tooLong[0].contains(" 414"), tooLong[0]);
            assertTrue(tooLong[2].toLowerCase().contains("content-type: application/json"), tooLong[2]);
            assertTrue(JSON.readTree(tooLong[1]).path("error").asText().startsWith("414"), tooLong[1]);

            final String[] bad = raw(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
            assertTrue(bad[0].contains(" 400"), bad[0]);
            assertTrue(JSON.readTree(bad[1]).has("error"), bad[1]);

            final String[] unicode = raw(port, "GET /v1/models/mod%C3%A8le%20x/versions HTTP/1.1\r\nHost: x\r\n" +
                "Authorization: Bearer t0ken-x\r\nConnection: close\r\n\r\n");
            final JsonNode error = JSON.readTree(unicode[1]);
            assertTrue(error.path("error").asText().contains("'modèle x'"), unicode[1]);
        }
        assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(data)));
    }
}
