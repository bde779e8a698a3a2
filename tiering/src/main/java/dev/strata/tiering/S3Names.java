package dev.strata.tiering;

import dev.strata.transport.BlockId;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.awscore.exception.AwsErrorDetails;
import software.amazon.awssdk.core.ResponseInputStream;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.AbortedException;
import software.amazon.awssdk.core.exception.ApiCallAttemptTimeoutException;
import software.amazon.awssdk.core.exception.ApiCallTimeoutException;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.GetObjectResponse;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.ListObjectsV2Request;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.s3.model.S3Object;
import software.amazon.awssdk.services.s3.model.UploadPartResponse;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.URI;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Locale;
import java.util.Objects;
import java.util.regex.Pattern;

/** The checks S3ObjectTier applies to its endpoint, bucket and key prefix, each failing with what is wrong. */
final class S3Names
{
    private static final Pattern BUCKET = Pattern.compile("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]");
    private static final Pattern IPV4 = Pattern.compile("\\d{1,3}(\\.\\d{1,3}){3}");

    private S3Names()
    {
    }


    static URI validateEndpoint(final URI endpoint)
    {
        if (endpoint == null)
        {
            throw new IllegalArgumentException("an S3 endpoint URI is required (e.g. https://s3.amazonaws.com)");
        }
        final String scheme = endpoint.getScheme() == null ? "" : endpoint.getScheme().toLowerCase(Locale.ROOT);
        if (!scheme.equals("http") && !scheme.equals("https") || endpoint.getHost() == null)
        {
            throw new IllegalArgumentException("invalid S3 endpoint '" + endpoint
                + "' (expected http://host[:port] or https://host[:port])");
        }
        if (endpoint.getRawQuery() != null || endpoint.getRawFragment() != null || endpoint.getRawUserInfo() != null)
        {
            throw new IllegalArgumentException("invalid S3 endpoint '" + endpoint
                + "' (no user info, query or fragment allowed)");
        }
        return endpoint;
    }

    /** Checks a bucket name against the S3 general-purpose bucket naming rules. */
    static String validateBucket(final String bucket)
    {
        final String reason;
        if (bucket == null || bucket.isEmpty())
        {
            reason = "it is empty";
        }
        else if (bucket.length() < 3 || bucket.length() > 63)
        {
            reason = "it must be 3 to 63 characters long";
        }
        else if (!BUCKET.matcher(bucket).matches())
        {
            reason = "it may hold only lower-case letters, digits, dots and hyphens, and must start and end with a"
                + " letter or digit";
        }
        else if (bucket.contains(".."))
        {
            reason = "it must not contain two adjacent dots";
        }
        else if (bucket.contains(".-") || bucket.contains("-."))
        {
            reason = "a dot must not be next to a hyphen";
        }
        else if (IPV4.matcher(bucket).matches())
        {
            reason = "it must not look like an IP address";
        }
        else if (bucket.startsWith("xn--") || bucket.startsWith("sthree-") || bucket.startsWith("amzn-s3-demo-"))
        {
            reason = "it must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)";
        }
        else if (bucket.endsWith("-s3alias") || bucket.endsWith("--ol-s3") || bucket.endsWith(".mrap")
            || bucket.endsWith("--x-s3") || bucket.endsWith("--table-s3"))
        {
            reason = "it must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)";
        }
        else
        {
            return bucket;
        }
        throw new IllegalArgumentException("invalid S3 bucket name '" + bucket + "': " + reason);
    }

    static String validatePrefix(final String keyPrefix)
    {
        if (keyPrefix == null || keyPrefix.isEmpty())
        {
            return "";
        }
        final String reason;
        if (keyPrefix.startsWith("/"))
        {
            reason = "it must not start with '/' (S3 keys are relative to the bucket)";
        }
        else if (keyPrefix.length() > S3ObjectTier.MAX_PREFIX_LENGTH)
        {
            reason = "it is longer than " + S3ObjectTier.MAX_PREFIX_LENGTH + " characters";
        }
        else if (keyPrefix.chars().anyMatch(c -> c < 0x20 || c == 0x7F || c == '\\'))
        {
            reason = "it must not contain control characters or backslashes";
        }
        else if (keyPrefix.contains("//"))
        {
            reason = "it must not contain empty path segments ('//')";
        }
        else if (("/" + keyPrefix + "/").contains("/./") || ("/" + keyPrefix + "/").contains("/../"))
        {
            reason = "it must not contain '.' or '..' path segments";
        }
        else
        {
            return keyPrefix;
        }
        throw new IllegalArgumentException("invalid S3 key prefix '" + keyPrefix + "': " + reason);
    }

    static void requireText(final String value, final String what)
    {
        if (value == null || value.isBlank())
        {
            throw new IllegalArgumentException("an S3 " + what + " is required");
        }
    }
}
