package dev.strata.paramserver;

import java.nio.charset.StandardCharsets;

/**
 * The token a service that protects reads requires in every block request, cancel and hint, compared in constant
 * time; a message's token is read into a reused scratch array, so no String is made per request. Used by the block
 * server's agent thread only.
 */
final class TokenCheck
{
    private final byte[] token;
    private final byte[] other;
    private final byte[] scratch;

    /** @param token the required token; null or empty when reads are open. */
    TokenCheck(final String token)
    {
        this(token, null);
    }

    /**
     * @param token the required token (the admin token); null or empty when reads are open.
     * @param other a second token also accepted (the read-only token); may be null.
     */
    TokenCheck(final String token, final String other)
    {
        this.token = token == null || token.isEmpty() ? null : token.getBytes(StandardCharsets.US_ASCII);
        this.other = this.token == null || other == null || other.isEmpty() ? null :
            other.getBytes(StandardCharsets.US_ASCII);
        this.scratch = new byte[this.token == null ? 0 :
            Math.max(this.token.length, this.other == null ? 0 : this.other.length)];
    }

    /** Whether a token is required at all. */
    boolean required()
    {
        return token != null;
    }

    /** Where a message's token is read to. */
    byte[] scratch()
    {
        return scratch;
    }

    /**
     * Whether a message whose token is {@code length} bytes, of which {@code copied} were read into the scratch,
     * carries the required token (true when none is required).
     */
    boolean matches(final int length, final int copied)
    {
        if (token == null)
        {
            return true;
        }
        return equal(token, length, copied) | (other != null && equal(other, length, copied));
    }

    private boolean equal(final byte[] expected, final int length, final int copied)
    {
        if (length != expected.length || copied != length)
        {
            return false;
        }
        int diff = 0;
        for (int i = 0; i < length; i++)
        {
            diff |= expected[i] ^ scratch[i];
        }
        return diff == 0;
    }
}
