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

/** Streams a segment's bytes (no copy); supports mark and reset. */
final class SegmentInputStream extends InputStream
{
    private final MemorySegment bytes;
    private long position;
    private long mark;

    SegmentInputStream(final MemorySegment bytes)
    {
        this.bytes = bytes;
    }

    @Override
    public int read()
    {
        return position < bytes.byteSize() ? bytes.get(ValueLayout.JAVA_BYTE, position++) & 0xFF : -1;
    }

    @Override
    public int read(final byte[] b, final int off, final int len)
    {
        Objects.checkFromIndexSize(off, len, b.length);
        if (len == 0)
        {
            return 0;
        }
        final long left = bytes.byteSize() - position;
        if (left <= 0)
        {
            return -1;
        }
        final int n = (int)Math.min(len, left);
        MemorySegment.copy(bytes, ValueLayout.JAVA_BYTE, position, b, off, n);
        position += n;
        return n;
    }

    @Override
    public long skip(final long n)
    {
        final long skipped = Math.max(0, Math.min(n, bytes.byteSize() - position));
        position += skipped;
        return skipped;
    }

    @Override
    public int available()
    {
        return (int)Math.min(Integer.MAX_VALUE, bytes.byteSize() - position);
    }

    @Override
    public boolean markSupported()
    {
        return true;
    }

    @Override
    public void mark(final int readlimit)
    {
        mark = position;
    }

    @Override
    public void reset()
    {
        position = mark;
    }
}
