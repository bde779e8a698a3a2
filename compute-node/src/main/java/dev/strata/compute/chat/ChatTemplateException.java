package dev.strata.compute.chat;

/** A chat template that cannot be loaded or rendered; {@link #kind()} tells which problem, the message the details. */
public final class ChatTemplateException extends RuntimeException
{
    /** What went wrong. */
    public enum Kind
    {
        /** The template text is not valid Jinja (reported when the template is loaded). */
        SYNTAX,
        /** The template itself rejected the conversation with {@code raise_exception(message)}. */
        RAISED,
        /** Rendering failed for another reason, e.g. an unsupported Jinja or Python feature. */
        RENDER
    }

    private final Kind kind;

    /**
     * @param kind    what went wrong.
     * @param message the details, naming the template and, when known, the line.
     */
    public ChatTemplateException(final Kind kind, final String message)
    {
        super(message);
        this.kind = kind;
    }

    /**
     * @param kind    what went wrong.
     * @param message the details, naming the template and, when known, the line.
     * @param cause   the underlying Jinjava error.
     */
    public ChatTemplateException(final Kind kind, final String message, final Throwable cause)
    {
        super(message, cause);
        this.kind = kind;
    }

    /** @return the kind of failure. */
    public Kind kind()
    {
        return kind;
    }
}
