package dev.strata.compute.engine;

import dev.strata.compute.tokenizer.StreamingDecoder;
import dev.strata.compute.tokenizer.Tokenizer;

import java.util.List;

/**
 * The text of one request as its tokens arrive: decodes them, cuts the text before the first stop string, and holds
 * back what may still become the start of one. The engine runs one per sequence; the router of a split deployment
 * runs one per request over the tokens that nodes send, so that the text survives a move to another node.
 */
public final class TextStream
{
    private final StreamingDecoder decoder;
    private final List<String> stops;
    private final StringBuilder text = new StringBuilder();
    private int emitted;
    private boolean stopped;

    public TextStream(final Tokenizer tokenizer, final List<String> stops)
    {
        this.decoder = new StreamingDecoder(tokenizer);
        this.stops = stops;
    }

    /**
     * Adds a generated token and returns the text released by it.
     *
     * @param token     the token.
     * @param stopToken whether it ends the request as a stop or end-of-generation token (it adds no text).
     * @param last      whether it is the last token for another reason (length): everything held back is released.
     */
    public String accept(final int token, final boolean stopToken, final boolean last)
    {
        if (stopToken)
        {
            text.append(decoder.flush());
            return release(text.length());
        }
        text.append(decoder.accept(token));
        final int cut = StopStrings.find(text, stops, emitted);
        if (cut >= 0)
        {
            text.setLength(cut);
            stopped = true;
            return release(cut);
        }
        if (last)
        {
            text.append(decoder.flush());
            return release(text.length());
        }
        return release(text.length() - StopStrings.heldBack(text, stops));
    }

    /** Whether a stop string was found: the text is cut before it and the request ends. */
    public boolean stopped()
    {
        return stopped;
    }

    /** The text so far (cut before a stop string). */
    public String text()
    {
        return text.toString();
    }

    private String release(final int upTo)
    {
        if (upTo <= emitted)
        {
            return "";
        }
        final String delta = text.substring(emitted, upTo);
        emitted = upTo;
        return delta;
    }
}
