package dev.strata.tests;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.gguf.GgmlType;
import dev.strata.compute.model.Generator;
import dev.strata.compute.model.Llama;
import dev.strata.compute.sampling.Sampler;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.stream.BlockChannel;
import dev.strata.compute.stream.ComputeNode;
import dev.strata.compute.stream.StreamingWeightSource;
import dev.strata.compute.synth.SyntheticModel;
import dev.strata.compute.tensor.ThreadPool;
import dev.strata.paramserver.ParamService;
import dev.strata.prefetch.LayerTrace;
import dev.strata.prefetch.PrefetchSettings;
import dev.strata.prefetch.TraceReplay;
import dev.strata.tools.Main;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.By;
import org.openqa.selenium.JavascriptExecutor;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.TakesScreenshot;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.logging.LogEntry;
import org.openqa.selenium.logging.LogType;
import org.openqa.selenium.logging.LoggingPreferences;
import org.openqa.selenium.support.ui.Select;
import org.openqa.selenium.support.ui.WebDriverWait;

import java.io.File;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Level;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The dashboard in a real browser (Debian's headless Chromium, driven by Selenium through Debian's chromedriver),
 * against a running service with two streaming nodes generating tokens: the page loads without console errors,
 * every plot has data points, a look-ahead change made on the page reaches the nodes (their reported look-ahead
 * changes) and shows as a marker, a change without the token is refused, and a replay shows the recorded run and
 * the replays side by side. Then 16 simulated nodes add 15 minutes of history, and the page's redraws are
 * measured and reported (not asserted on time). Skips, saying why, where Chromium or chromedriver is missing.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class DashboardBrowserTest
{
    private static final String TOKEN = "browser-token";
    private static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    private static final Path CHROMEDRIVER = Path.of("/usr/bin/chromedriver");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int[] PROMPT = {1, 72, 101, 108, 108, 111};

    @TempDir
    Path dir;

    /** Generates tokens on a node until closed. */
    static final class Workload implements AutoCloseable
    {
        private final AtomicBoolean running = new AtomicBoolean(true);
        private final Thread thread;

        Workload(final StreamingWeightSource weights)
        {
            thread = Thread.ofPlatform().daemon().name("workload").start(() ->
            {
                try (ThreadPool pool = new ThreadPool(1))
                {
                    final Llama llama = new Llama(weights, pool, 8);
                    while (running.get())
                    {
                        new Generator(llama).generate(PROMPT, 8, 256, Sampler.create(SamplerConfig.greedy()),
                            t -> false, t -> running.get());
                    }
                }
            });
        }

        @Override
        public void close() throws InterruptedException
        {
            running.set(false);
            thread.join(30_000);
        }
    }

    private static void cli(final String... args)
    {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final int code = Main.run(new PrintWriter(out), new PrintWriter(err), args);
        assertEquals(0, code, err.toString());
    }

    private WebDriver chromium() throws Exception
    {
        final ChromeOptions options = new ChromeOptions();
        options.setBinary(CHROMIUM.toFile());
        options.addArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1600,2400",
            "--user-data-dir=" + Files.createDirectories(dir.resolve("chromium-profile")));
        final LoggingPreferences logs = new LoggingPreferences();
        logs.enable(LogType.BROWSER, Level.ALL);
        options.setCapability("goog:loggingPrefs", logs);
        final ChromeDriverService service = new ChromeDriverService.Builder()
            .usingDriverExecutable(CHROMEDRIVER.toFile()).usingAnyFreePort().build();
        return new ChromeDriver(service, options);
    }

    private static Object js(final WebDriver driver, final String script)
    {
        return ((JavascriptExecutor)driver).executeScript(script);
    }

    private static long number(final WebDriver driver, final String expression)
    {
        final Object v = js(driver, "return " + expression + ";");
        return v == null ? -1 : ((Number)v).longValue();
    }

    /**
     * Severe console entries, except Chromium's network line for the refusals the test provokes on purpose (a knob
     * change without the token, 401, and with a bad value, 400): those are answers, not page errors.
     */
    private static List<String> consoleErrors(final WebDriver driver)
    {
        final List<String> errors = new ArrayList<>();
        for (final LogEntry e : driver.manage().logs().get(LogType.BROWSER))
        {
            final String m = e.getMessage();
            final boolean provoked = m.contains("/v1/dashboard/settings - Failed to load resource: the server " +
                "responded with a status of 40") && (m.contains("status of 401") || m.contains("status of 400"));
            if (e.getLevel().intValue() >= Level.SEVERE.intValue() && !provoked)
            {
                errors.add(m);
            }
        }
        return errors;
    }

    @Test
    void shouldPlotLiveNodesTakeKnobChangesAndCompareReplaysInChromium() throws Exception
    {
        Assumptions.assumeTrue(Files.isExecutable(CHROMIUM) && Files.isExecutable(CHROMEDRIVER),
            "skipped: the browser test needs Debian's chromium and chromium-driver (apt-get install chromium " +
                "chromium-driver: /usr/bin/chromium, /usr/bin/chromedriver); .ci/run installs them");
        final Path gguf = dir.resolve("small.gguf");
        SyntheticModel.write(gguf, SyntheticModel.Shape.parse("dim=128,layers=4,heads=4,kv=2,ffn=256"),
            GgmlType.Q8_0, null, 5);
        try (ParamService service = ParamService.launch(new ParamService.Context().dataDir(dir.resolve("data"))
            .token(TOKEN)))
        {
            final int port = service.adminPort();
            final String server = "localhost:" + port;
            cli("model", "upload", gguf.toString(), "--name", "small", "--label", "stable", "--server", server,
                "--token", TOKEN);
            final LayerTrace.Settings sizes;
            try (ComputeNode probe = ComputeNode.launch(new ComputeNode.Context().paramServer(server).token(TOKEN)
                .model("small").nodeName("probe").reportIntervalMillis(0)))
            {
                probe.weights().recordTrace(1);
                sizes = probe.weights().layerTrace(1).settings();
            }
            // two and a half layers next to the globals: the nodes keep fetching, so every plot keeps moving
            final long budget = sizes.globalsBytes() + 2 * sizes.layerBytes()[0] + sizes.layerBytes()[0] / 2;
            final StreamingWeightSource.Options options = StreamingWeightSource.Options.defaults(budget)
                .withMode(BlockChannel.Mode.UDP);
            try (ComputeNode n1 = ComputeNode.launch(new ComputeNode.Context().paramServer(server).token(TOKEN)
                    .model("small").nodeName("n1").options(options));
                ComputeNode n2 = ComputeNode.launch(new ComputeNode.Context().paramServer(server).token(TOKEN)
                    .model("small").nodeName("n2").options(options)))
            {
                // a recorded trace for the replay: n1's accesses under a fixed look-ahead of 1
                n1.weights().apply(new PrefetchSettings(1, PrefetchSettings.Kind.LEARNED, 0));
                n1.weights().recordTrace(1 << 20);
                try (Workload w1 = new Workload(n1.weights()); Workload w2 = new Workload(n2.weights()))
                {
                    final long t0 = System.nanoTime();
                    while (n1.reporter().reports() < 3 || n2.reporter().reports() < 3)
                    {
                        assertTrue(System.nanoTime() - t0 < 30_000_000_000L, "nodes did not report");
                        Thread.sleep(50);
                    }
                    final LayerTrace trace = n1.weights().layerTrace(n1.stats().observedLinkBytesPerSecond());
                    n1.weights().apply(PrefetchSettings.DEFAULTS); // back to what the service pushes
                    final Path traceFile = dir.resolve("n1.trace");
                    trace.write(traceFile);
                    final HttpResponse<String> put = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                            URI.create("http://" + server + "/v1/dashboard/traces/n1.trace"))
                        .header("Authorization", "Bearer " + TOKEN)
                        .PUT(HttpRequest.BodyPublishers.ofFile(traceFile)).build(), HttpResponse.BodyHandlers.ofString());
                    assertEquals(200, put.statusCode(), put.body());
                    final TraceReplay.Result recorded = TraceReplay.recorded(trace);

                    final WebDriver driver = chromium();
                    try
                    {
                        page(driver, server, n1, n2, recorded);
                        load(driver, service);
                        final Path shot = Path.of("target", "dashboard.png").toAbsolutePath();
                        Files.createDirectories(shot.getParent());
                        Files.write(shot, ((TakesScreenshot)driver).getScreenshotAs(OutputType.BYTES));
                        System.out.println("[dashboard-browser] screenshot: " + shot);
                    }
                    catch (final AssertionError | RuntimeException ex)
                    {
                        final byte[] png = ((TakesScreenshot)driver).getScreenshotAs(OutputType.BYTES);
                        final Path shot = Path.of("target", "dashboard-failure.png").toAbsolutePath();
                        Files.createDirectories(shot.getParent());
                        Files.write(shot, png);
                        System.out.println("[dashboard-browser] screenshot of the failure: " + shot);
                        throw ex;
                    }
                    finally
                    {
                        driver.quit();
                    }
                }
            }
        }
    }

    private static void page(final WebDriver driver, final String server, final ComputeNode n1, final ComputeNode n2,
        final TraceReplay.Result recorded) throws Exception
    {
        final WebDriverWait wait = new WebDriverWait(driver, Duration.ofSeconds(30), Duration.ofMillis(100));
        driver.get("http://" + server + "/dashboard");
        final String[] plots = {"p-load", "p-frag", "p-thru", "p-hitrate", "p-occupancy", "p-latency", "p-stall",
            "p-tokens", "p-budget", "p-accuracy", "p-coverage", "p-timeliness", "p-lookahead", "p-versions", "heat"};
        wait.withMessage("every plot has data points").until(d ->
        {
            if (number(d, "window.strataPerf.updates") < 2)
            {
                return false;
            }
            for (final String p : plots)
            {
                if (number(d, "window.strataPlots['" + p + "'] || 0") <= 0)
                {
                    return false;
                }
            }
            return true;
        });
        for (final String node : List.of("n1 small@1", "n2 small@1"))
        {
            assertTrue(number(driver, "window.strataState.nodes.get('" + node + "').fields.tokens_per_s" +
                ".filter(v => v !== null && v > 0).length") > 0, node + " has decode tokens/s points on the page");
        }
        assertEquals(List.of(), consoleErrors(driver), "console errors after loading");
        final WebElement canvas = driver.findElement(By.id("heat"));
        assertTrue(canvas.isDisplayed());

        // a knob change on the page, with the token
        driver.findElement(By.id("k-token")).sendKeys(TOKEN);
        final WebElement lookahead = driver.findElement(By.id("k-lookahead"));
        lookahead.clear();
        lookahead.sendKeys("2");
        final long clicked = System.nanoTime();
        driver.findElement(By.id("k-apply")).click();
        wait.withMessage("the change applied").until(d -> d.findElement(By.id("k-result")).getText().startsWith("applied"));
        final long t0 = System.nanoTime();
        while (n1.weights().settings().lookahead() != 2 || n2.weights().settings().lookahead() != 2)
        {
            assertTrue(System.nanoTime() - t0 < 5_000_000_000L, "the nodes did not take look-ahead 2");
            Thread.sleep(10);
        }
        System.out.printf("[dashboard-browser] look-ahead change from the page's click to both running nodes: %.0f ms%n",
            (System.nanoTime() - clicked) / 1e6);
        wait.withMessage("the nodes' reported look-ahead is 2 on the page and the change is a marker").until(d ->
            number(d, "window.strataState.events.length") == 1 &&
                number(d, "window.strataPerf.markersDrawn") > 0 &&
                number(d, "(() => { const f = window.strataState.nodes.get('n1 small@1').fields.lookahead; " +
                    "return f[f.length - 1]; })()") == 2 &&
                number(d, "(() => { const f = window.strataState.nodes.get('n2 small@1').fields.lookahead; " +
                    "return f[f.length - 1]; })()") == 2);
        assertEquals("lookahead", js(driver, "return window.strataState.events[0].knob;"));
        final long changedAt = number(driver, "window.strataState.events[0].atMillis");
        System.out.printf("[dashboard-browser] from the service taking the change to the nodes applying it: n1 %d ms, " +
            "n2 %d ms%n", n1.reporter().appliedAtMillis() - changedAt, n2.reporter().appliedAtMillis() - changedAt);

        // without the token: refused, nothing changes
        driver.findElement(By.id("k-token")).clear();
        lookahead.clear();
        lookahead.sendKeys("3");
        driver.findElement(By.id("k-apply")).click();
        wait.withMessage("the change refused").until(d -> d.findElement(By.id("k-result")).getText().startsWith("refused"));
        assertTrue(driver.findElement(By.id("k-result")).getText().contains("401"),
            driver.findElement(By.id("k-result")).getText());
        assertEquals(2, n1.weights().settings().lookahead());

        // a bad value, with the token: refused with the reason
        driver.findElement(By.id("k-token")).sendKeys(TOKEN);
        lookahead.clear();
        lookahead.sendKeys("99");
        driver.findElement(By.id("k-apply")).click();
        wait.withMessage("the bad value refused").until(d ->
            d.findElement(By.id("k-result")).getText().contains("invalid lookahead=99"));

        // what-if replay of n1's trace: the recorded run and two replays side by side
        js(driver, "return window.strataLoadTraces();");
        wait.withMessage("the trace listed").until(d -> !d.findElements(By.cssSelector("#r-trace option")).isEmpty());
        new Select(driver.findElement(By.id("r-trace"))).selectByVisibleText("n1.trace");
        final WebElement settings = driver.findElement(By.id("r-settings"));
        settings.clear();
        settings.sendKeys("[{}, {\"prefetch\": false}]");
        driver.findElement(By.id("r-run")).click();
        wait.withMessage("the comparison table").until(d -> d.findElements(By.cssSelector("#r-table tr.run")).size() == 3);
        final List<WebElement> rows = driver.findElements(By.cssSelector("#r-table tr.run"));
        assertEquals(recorded.hits(), cell(rows.get(0), "hits"));
        assertEquals(recorded.misses(), cell(rows.get(0), "misses"));
        assertEquals(recorded.hits(), cell(rows.get(1), "hits"), "the replay under the recorded settings");
        assertEquals(recorded.misses(), cell(rows.get(1), "misses"));
        assertTrue(cell(rows.get(2), "misses") > recorded.misses(), "without prefetch more demand fetches");
        System.out.printf("[dashboard-browser] replay on the page: recorded %d hits / %d misses; same settings %d / %d;" +
            " no prefetch %d / %d%n", recorded.hits(), recorded.misses(), cell(rows.get(1), "hits"),
            cell(rows.get(1), "misses"), cell(rows.get(2), "hits"), cell(rows.get(2), "misses"));
        assertEquals(List.of(), consoleErrors(driver), "console errors after the knobs and the replay");
    }

    private static long cell(final WebElement row, final String column)
    {
        return Long.parseLong(row.findElement(By.cssSelector("td[data-col='" + column + "']")).getText());
    }

    /** 16 simulated nodes x 15 minutes, then the page's redraws are measured over 15 updates. */
    private static void load(final WebDriver driver, final ParamService service) throws Exception
    {
        DashboardLoadTest.load(service, TOKEN); // reads are protected: reports carry the token as real nodes' do
        final long before = number(driver, "window.strataPerf.draws");
        final WebDriverWait wait = new WebDriverWait(driver, Duration.ofSeconds(60), Duration.ofMillis(200));
        wait.withMessage("the simulated nodes on the page").until(d ->
            number(d, "window.strataState.nodes.size") >= 18 && number(d, "window.strataPerf.draws") > before);
        js(driver, "const p = window.strataPerf; p.maxDrawMs = 0; p.totalDrawMs = 0; p.draws = 0; p.behind = 0; " +
            "p.maxIntervalMs = 0; p.maxFetchMs = 0; return 0;");
        final long start = System.nanoTime();
        wait.withMessage("15 redraws").until(d -> number(d, "window.strataPerf.draws") >= 15);
        final double seconds = (System.nanoTime() - start) / 1e9;
        @SuppressWarnings("unchecked")
        final Map<String, Object> perf = (Map<String, Object>)js(driver, "return window.strataPerf;");
        final double draws = ((Number)perf.get("draws")).doubleValue();
        System.out.printf("[dashboard-browser] 18 nodes (16 simulated x 15 min): %.0f redraws in %.1f s; draw mean " +
                "%.1f ms, max %.1f ms; fetch+parse max %.1f ms; longest gap between updates %.0f ms; updates more than " +
                "1.5 s apart: %s%n", draws, seconds, ((Number)perf.get("totalDrawMs")).doubleValue() / draws,
            ((Number)perf.get("maxDrawMs")).doubleValue(), ((Number)perf.get("maxFetchMs")).doubleValue(),
            ((Number)perf.get("maxIntervalMs")).doubleValue(), perf.get("behind"));
        assertEquals(List.of(), consoleErrors(driver), "console errors under load");
        assertTrue(number(driver, "window.strataPlots['p-tokens']") > 16 * 800, "the simulated nodes' points are drawn");
    }
}
