package dev.strata.tools;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI end to end, in-process: outputs, exit codes and error messages a script can rely on. */
class CliTest
{
    @TempDir
    static Path dir;

    static Path tiny;

    record Run(int code, String out, String err)
    {
    }

    /** {@code ../shared/models} as surefire names it, else the workplace's fixed location. */
    static Path sharedModels()
    {
        // surefire sets the property to <project>/../shared/models; from a module directory that is ../../shared
        final String configured = System.getProperty("strata.shared.models");
        return configured != null ? Path.of(configured) :
            Path.of("").toAbsolutePath().resolve("../../shared/models").normalize();
    }

    static Run run(final String... args)
    {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final int code = Main.run(new PrintWriter(out), new PrintWriter(err), args);
        return new Run(code, out.toString(), err.toString());
    }

    @BeforeAll
    static void synthesize()
    {
        tiny = dir.resolve("tiny.gguf");
        final Run r = run("synth", "--shape", "tiny", "--type", "Q8_0", "--out", tiny.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote"), r.out());
    }

    @Test
    void shouldWriteIdenticalBytesForSameSeed() throws Exception
    {
        final Path again = dir.resolve("again.gguf");
        assertEquals(0, run("synth", "--shape", "tiny", "--type", "Q8_0", "--out", again.toString()).code());
        assertTrue(Arrays.equals(Files.readAllBytes(tiny), Files.readAllBytes(again)));
        final Path other = dir.resolve("other.gguf");
        assertEquals(0, run("synth", "--shape", "tiny", "--type", "Q8_0", "--seed", "2", "--out", other.toString())
            .code());
        assertFalse(Arrays.equals(Files.readAllBytes(tiny), Files.readAllBytes(other)));
    }

    @Test
    void shouldGenerateDeterministicallyAndReportSpeeds()
    {
        final Run a = run("generate", "-m", tiny.toString(), "-p", "hello", "-n", "12", "--temperature", "0.9",
            "--seed", "5", "-t", "2");
        final Run b = run("generate", "-m", tiny.toString(), "-p", "hello", "-n", "12", "--temperature", "0.9",
            "--seed", "5", "-t", "1");
        assertEquals(0, a.code(), a.err());
        assertTrue(a.out().startsWith("hello"), a.out());
        assertEquals(a.out(), b.out(), "same seed, same text, whatever the thread count");
        assertTrue(a.err().contains("prefill:") && a.err().contains("decode:"), a.err());
    }

    @Test
    void shouldFailClearlyOnTruncatedModel() throws Exception
    {
        final Path truncated = dir.resolve("truncated.gguf");
        final byte[] bytes = Files.readAllBytes(tiny);
        Files.write(truncated, Arrays.copyOf(bytes, bytes.length / 2));
        final Run r = run("generate", "-m", truncated.toString(), "-p", "hi");
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("error: ") && r.err().contains("truncated"), r.err());
    }

    @Test
    void shouldFailClearlyOnWrongMagicAndMissingFile() throws Exception
    {
        final Path text = dir.resolve("notes.gguf");
        Files.writeString(text, "this is not a model file at all");
        final Run magic = run("tokenize", "-m", text.toString(), "hi");
        assertEquals(1, magic.code());
        assertTrue(magic.err().contains("not a GGUF file"), magic.err());

        final Run missing = run("generate", "-m", dir.resolve("absent.gguf").toString(), "-p", "hi");
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("no such file"), missing.err());
    }

    @Test
    void shouldExitWithUsageErrorOnBadOptions()
    {
        assertEquals(2, run("generate", "-p", "no model").code());
        assertEquals(2, run("synth", "--shape", "tiny").code());
        assertEquals(2, run("no-such-command").code());
        final Run badType = run("synth", "--shape", "tiny", "--type", "Q5_K", "--out", dir.resolve("x").toString());
        assertEquals(1, badType.code());
        assertTrue(badType.err().contains("Q5_K"), badType.err());
        final Run badShape = run("synth", "--shape", "huge", "--out", dir.resolve("y").toString());
        assertEquals(1, badShape.code());
        assertTrue(badShape.err().contains("unknown shape"), badShape.err());
    }

    @Test
    void shouldTokenizeLikeLlamaCppWithNoBos() throws Exception
    {
        final Path shared = sharedModels();
        final Path vocab = shared.resolve("llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
        Assumptions.assumeTrue(Files.isRegularFile(vocab), "skipped: " + vocab + " is absent");
        // first test string of the llama.cpp vectors and its expected ids
        final String inp = Files.readString(shared.resolve("llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp"));
        final String firstOut = Files.readAllLines(shared.resolve("llama.cpp-vocab/ggml-vocab-llama-spm.gguf.out"))
            .get(5).trim();
        final String text = inp.split("\n__ggml_vocab_test__\n", -1)[5];
        final Run r = run("tokenize", "-m", vocab.toString(), "--ids-only", "--no-bos", text);
        assertEquals(0, r.code(), r.err());
        assertEquals("[" + firstOut.replace(" ", ", ") + "]", r.out().trim());
    }

    @Test
    void shouldReproduceGoldenTextOnStories260K() throws Exception
    {
        final Path shared = sharedModels();
        final Path model = shared.resolve("stories260K.gguf");
        Assumptions.assumeTrue(Files.isRegularFile(model), "skipped: " + model + " is absent");
        final String stdout = new com.fasterxml.jackson.databind.ObjectMapper()
            .readTree(shared.resolve("golden-once-upon-a-time.json").toFile()).get("stdout").textValue();
        final Run r = run("generate", "-m", model.toString(), "-p", "Once upon a time", "-n", "60", "--temperature",
            "0");
        assertEquals(0, r.code(), r.err());
        assertEquals(stdout.strip(), r.out().strip());
    }

    @Test
    void shouldSayWhenChatFallsBackForModelWithoutTemplate()
    {
        final Run r = run("generate", "-m", tiny.toString(), "--chat", "-p", "hi", "-n", "4", "--temperature", "0");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("note:") && r.err().contains("chatml"), r.err());
    }

    @Test
    void shouldRejectBadSamplingOptionsClearly()
    {
        final Run r = run("generate", "-m", tiny.toString(), "-p", "hi", "--top-p", "1.5");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("topP"), r.err());
    }
}
