package dev.strata.tools;

import dev.strata.paramserver.ParamService;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/** {@code strata param-server}: runs the parameter service alone until stopped (SIGINT/SIGTERM). */
@Command(name = "param-server", description = "Run the parameter service: block store, registry, Aeron block " +
    "server and the HTTP admin API.")
final class ParamServerCommand implements Callable<Integer>
{
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--data-dir", required = true, description = "Where blocks, manifests and the registry live.")
    Path dataDir;

    @Option(names = "--admin-port", defaultValue = "7070", description = "HTTP admin port (0: any free port).")
    int adminPort;

    @Option(names = "--bind", defaultValue = "127.0.0.1", paramLabel = "ADDR", description = "Interface the admin " +
        "API listens on (default ${DEFAULT-VALUE}; 0.0.0.0 for every interface).")
    String bind;

    @Option(names = "--token", description = "Admin token (default: $STRATA_TOKEN, else the file named by " +
        "$STRATA_TOKEN_FILE). Prefer --token-file: a value here shows in ps.")
    String token;

    @Option(names = "--token-file", paramLabel = "FILE", description = "Read the admin token from this file.")
    Path tokenFile;

    @Option(names = "--read-token", description = "A read-only token for compute nodes: reads and leases only " +
        "(default: $STRATA_READ_TOKEN, else the file named by $STRATA_READ_TOKEN_FILE).")
    String readToken;

    @Option(names = "--read-token-file", paramLabel = "FILE", description = "Read the read-only token from this file.")
    Path readTokenFile;

    @Option(names = "--insecure-no-token", description = "Run without a token (local development only).")
    boolean noToken;

    @Option(names = "--open-reads", description = "Let anyone who reaches the service read models, manifests and " +
        "blocks without a token (a trusted network only). By default reads need the admin or the read-only token.")
    boolean openReads;

    @Option(names = "--protect-reads", hidden = true, description = "Reads are protected by default (kept for old " +
        "scripts).")
    boolean protectReads;

    @Option(names = "--memory-budget", defaultValue = "1G", description = "Memory tier budget (default ${DEFAULT-VALUE}).")
    String memoryBudget;

    @Option(names = "--ssd-budget", defaultValue = "16G", description = "SSD tier budget (default ${DEFAULT-VALUE}).")
    String ssdBudget;

    @Option(names = "--aeron-endpoint", defaultValue = "localhost:0", paramLabel = "HOST:PORT",
        description = "UDP endpoint of the block server (default ${DEFAULT-VALUE}; 0 picks a free port).")
    String aeronEndpoint;

    @Option(names = "--s3-endpoint", paramLabel = "URL", description = "Keep the object tier in an S3-compatible " +
        "store at this endpoint (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) instead of " +
        "DATA_DIR/objects.")
    java.net.URI s3Endpoint;

    @Option(names = "--s3-bucket", description = "Existing bucket for --s3-endpoint.")
    String s3Bucket;

    @Option(names = "--s3-region", defaultValue = "us-east-1", description = "Signing region (default ${DEFAULT-VALUE}).")
    String s3Region;

    @Option(names = "--s3-prefix", defaultValue = "strata/blocks/", description = "Key prefix (default ${DEFAULT-VALUE}).")
    String s3Prefix;

    @Override
    public Integer call() throws Exception
    {
        ParamService.S3 s3 = null;
        if (s3Endpoint != null)
        {
            final String access = System.getenv("AWS_ACCESS_KEY_ID");
            final String secret = System.getenv("AWS_SECRET_ACCESS_KEY");
            if (s3Bucket == null || access == null || secret == null)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--s3-endpoint needs --s3-bucket and " +
                    "the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables");
            }
            s3 = new ParamService.S3(s3Endpoint, s3Region, s3Bucket, s3Prefix, access, secret);
        }
        if (protectReads && openReads)
        {
            throw new CommandLine.ParameterException(spec.commandLine(), "--protect-reads and --open-reads conflict");
        }
        final String t = Tokens.resolve(token, tokenFile, "STRATA_TOKEN");
        if ((t == null || t.isEmpty()) && !noToken)
        {
            throw new CommandLine.ParameterException(spec.commandLine(), "a token is required (--token-file, " +
                "--token, STRATA_TOKEN or STRATA_TOKEN_FILE), or --insecure-no-token for local development");
        }
        final String rt = noToken ? null : Tokens.resolve(readToken, readTokenFile, "STRATA_READ_TOKEN");
        final ParamService service = ParamService.launch(new ParamService.Context().dataDir(dataDir)
            .bindAddress(bind).adminPort(adminPort).token(noToken ? null : t).readToken(rt).openReads(openReads)
            .memoryBudgetBytes(Sizes.parse(memoryBudget)).ssdBudgetBytes(Sizes.parse(ssdBudget))
            .udpEndpoint(aeronEndpoint).s3(s3));
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() ->
        {
            service.close();
            stopped.countDown();
        }, "strata-shutdown"));
        final dev.strata.paramclient.ServiceInfo.Endpoints e = service.endpoints();
        spec.commandLine().getOut().printf("strata param-server: admin http://%s:%d (GET /health), " +
            "aeron %s and %s stream %d, data %s, objects %s; reads %s%n", bind, service.adminPort(), e.udpChannel(),
            e.ipcChannel(), e.streamId(), dataDir.toAbsolutePath(), s3 == null ?
                dataDir.resolve("objects").toAbsolutePath() : s3, noToken || openReads ? "open to anyone" :
                rt != null ? "need the admin or the read-only token" : "need the token");
        spec.commandLine().getOut().flush();
        stopped.await();
        return 0;
    }
}
