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

/** How S3ObjectTier reads an SDK failure: a one-line account without credentials, and what kind it is. */
final class S3Failures
{
    private S3Failures()
    {
    }

    /** A one-line account of an SDK (or I/O) failure, without credentials. */
    static String describe(final Throwable cause)
    {
        if (cause instanceof S3Exception s3)
        {
            final AwsErrorDetails details = s3.awsErrorDetails();
            final String code = details == null ? null : details.errorCode();
            final String text = details == null ? null : details.errorMessage();
            final StringBuilder sb = new StringBuilder("HTTP ").append(s3.statusCode());
            if (code != null && !code.isBlank())
            {
                sb.append(' ').append(code);
            }
            if (text != null && !text.isBlank())
            {
                sb.append(": ").append(text);
            }
            if (s3.statusCode() == 403)
            {
                sb.append(" (access denied: check the access key, the secret key and the bucket's permissions)");
            }
            else if ("NoSuchBucket".equals(code))
            {
                sb.append(" (the bucket does not exist)");
            }
            if (s3.requestId() != null)
            {
                sb.append(" [request id ").append(s3.requestId()).append(']');
            }
            return sb.toString();
        }
        if (cause instanceof ApiCallTimeoutException || cause instanceof ApiCallAttemptTimeoutException)
        {
            return "timed out: " + cause.getMessage();
        }
        if (cause instanceof SdkClientException && isUnreachable(cause))
        {
            return "endpoint unreachable: " + cause.getMessage();
        }
        if (cause instanceof SdkException)
        {
            return cause.getMessage();
        }
        return String.valueOf(cause);
    }

    static boolean isUnreachable(final Throwable ex)
    {
        for (Throwable t = ex; t != null; t = t.getCause() == t ? null : t.getCause())
        {
            if (t instanceof ConnectException || t instanceof UnknownHostException
                || t instanceof NoRouteToHostException || t.getClass().getSimpleName().contains("ConnectTimeout"))
            {
                return true;
            }
        }
        return false;
    }

    static boolean isInterrupted(final Throwable ex)
    {
        for (Throwable t = ex; t != null; t = t.getCause() == t ? null : t.getCause())
        {
            if (t instanceof InterruptedException || t instanceof AbortedException)
            {
                return true;
            }
        }
        return false;
    }

    /** A 404 for the object itself (not for a missing bucket, which is a failure). */
    static boolean isMissingKey(final SdkException ex)
    {
        if (ex instanceof NoSuchKeyException)
        {
            return true;
        }
        if (ex instanceof S3Exception s3 && s3.statusCode() == 404)
        {
            final String code = s3.awsErrorDetails() == null ? null : s3.awsErrorDetails().errorCode();
            return !"NoSuchBucket".equals(code);
        }
        return false;
    }
}
