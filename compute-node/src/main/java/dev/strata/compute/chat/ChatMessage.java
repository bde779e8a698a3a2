package dev.strata.compute.chat;

import java.util.Objects;

/**
 * One message of a conversation, as chat templates see it: {@code message['role']} and
 * {@code message['content']}.
 *
 * @param role    who speaks, conventionally {@code system}, {@code user} or {@code assistant}; not null.
 * @param content the text; not null (may be empty).
 */
public record ChatMessage(String role, String content)
{
    /** Rejects null role or content. */
    public ChatMessage
    {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
    }

    /** @return a {@code system} message. */
    public static ChatMessage system(final String content)
    {
        return new ChatMessage("system", content);
    }

    /** @return a {@code user} message. */
    public static ChatMessage user(final String content)
    {
        return new ChatMessage("user", content);
    }

    /** @return an {@code assistant} message. */
    public static ChatMessage assistant(final String content)
    {
        return new ChatMessage("assistant", content);
    }
}
