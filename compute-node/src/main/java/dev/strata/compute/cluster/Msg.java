package dev.strata.compute.cluster;

import com.fasterxml.jackson.annotation.JsonSubTypes;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.sampling.SamplerConfig;

import java.io.IOException;
import java.io.UncheckedIOException;

/**
 * The control messages between the router and the nodes, and between a prefill node and a decode node, one Aeron
 * message each, as JSON: a few hundred bytes at token rates, where readability of a captured stream matters more
 * than the microseconds of a binary codec. The KV bytes themselves go as {@link dev.strata.transport.bulk.BulkFrame}
 * chunks on a stream of their own.
 */
@JsonTypeInfo(use = JsonTypeInfo.Id.NAME, property = "type")
@JsonSubTypes({
    @JsonSubTypes.Type(value = Msg.Heartbeat.class, name = "heartbeat"),
    @JsonSubTypes.Type(value = Msg.Run.class, name = "run"),
    @JsonSubTypes.Type(value = Msg.Cancel.class, name = "cancel"),
    @JsonSubTypes.Type(value = Msg.Token.class, name = "token"),
    @JsonSubTypes.Type(value = Msg.Done.class, name = "done"),
    @JsonSubTypes.Type(value = Msg.Failed.class, name = "failed"),
    @JsonSubTypes.Type(value = Msg.Prefilled.class, name = "prefilled"),
    @JsonSubTypes.Type(value = Msg.KvOffer.class, name = "kv-offer"),
    @JsonSubTypes.Type(value = Msg.KvAccept.class, name = "kv-accept"),
    @JsonSubTypes.Type(value = Msg.KvAck.class, name = "kv-ack"),
    @JsonSubTypes.Type(value = Msg.SetRole.class, name = "set-role"),
})
public sealed interface Msg
{
    ObjectMapper JSON = new ObjectMapper()
        .configure(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    static byte[] encode(final Msg m)
    {
        try
        {
            return JSON.writeValueAsBytes(m);
        }
        catch (final IOException e)
        {
            throw new UncheckedIOException(e);
        }
    }

    static Msg decode(final byte[] bytes)
    {
        try
        {
            return JSON.readValue(bytes, Msg.class);
        }
        catch (final IOException e)
        {
            throw new IllegalArgumentException("malformed cluster message: " + e.getMessage(), e);
        }
    }

    /**
     * Offers one message, waiting out back-pressure and a publication that is still connecting for up to
     * {@code timeoutMillis}; returns null once sent, else why not (Aeron's reason).
     */
    static String offer(final io.aeron.Publication p, final Msg m, final long timeoutMillis)
    {
        final byte[] bytes = encode(m);
        final org.agrona.concurrent.UnsafeBuffer buffer = new org.agrona.concurrent.UnsafeBuffer(bytes);
        final long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        while (true)
        {
            final long result = p.offer(buffer, 0, bytes.length);
            if (result > 0)
            {
                return null;
            }
            if (result == io.aeron.Publication.CLOSED || result == io.aeron.Publication.MAX_POSITION_EXCEEDED ||
                System.nanoTime() - deadline > 0)
            {
                return io.aeron.Publication.errorString(result);
            }
            Thread.yield();
        }
    }

    /** A node's roles: which halves of requests the router sends it. */
    enum Role
    {
        PREFILL, DECODE, BOTH;

        public static Role parse(final String s)
        {
            try
            {
                return valueOf(s.trim().toUpperCase(java.util.Locale.ROOT));
            }
            catch (final IllegalArgumentException e)
            {
                throw new IllegalArgumentException("unknown role '" + s + "': prefill, decode or both");
            }
        }

        public boolean prefills()
        {
            return this != DECODE;
        }

        public boolean decodes()
        {
            return this != PREFILL;
        }
    }

    /** A request on the wire (stop strings stay with the router, which assembles the text). */
    record Spec(int[] prompt, SamplerConfig sampling, int maxTokens, int[] stopTokens, int logprobs,
        float presencePenalty, float frequencyPenalty, boolean ignoreEos, int resumed)
    {
        public static Spec of(final GenerationRequest r)
        {
            return new Spec(r.prompt(), r.sampling(), r.maxTokens(), r.stopTokens(), r.logprobs(),
                r.presencePenalty(), r.frequencyPenalty(), r.ignoreEos(), r.resumed());
        }

        public GenerationRequest request()
        {
            return new GenerationRequest(prompt, sampling, maxTokens, stopTokens, null, logprobs, presencePenalty,
                frequencyPenalty, ignoreEos, resumed);
        }
    }

    /**
     * Node → router, every heartbeat interval: who the node is, where it listens, and its load. The first one
     * registers the node; missing them takes it out of rotation.
     */
    record Heartbeat(String node, Role role, long pid, String host, String channel, int controlStream, int kvStream,
        String version, int maxContext, int vocabSize, long queueTokens, int running, int waiting, int kvBlocks,
        int kvFree, long kvBytesSent, long kvBytesReceived, long kvTransfers, long kvRetries, long kvSendNanos,
        long requests) implements Msg
    {
    }

    /**
     * Router → node: run a request; {@code prefill} mode computes the KV of all but the last prompt token and
     * hands it to the decode node named, {@code full} runs the whole request here.
     */
    record Run(long id, boolean prefillOnly, Spec spec, String version, String decodeNode, String decodeChannel,
        int decodeStream) implements Msg
    {
    }

    /** Router → node: drop a request (or its half). */
    record Cancel(long id) implements Msg
    {
    }

    /** Node → router: one generated token. */
    record Token(long id, String node, int token, float logprob, int[] topTokens, float[] topLogprobs) implements Msg
    {
    }

    /** Node → router: the request ended on the node ({@code reason} a FinishReason name). */
    record Done(long id, String node, String reason, String error, int cachedTokens, int preemptions) implements Msg
    {
    }

    /** Node → router: this node could not do its part; the router runs the request elsewhere. */
    record Failed(long id, String node, String error) implements Msg
    {
    }

    /** Prefill node → router: the KV went to the decode node. */
    /**
     * A prefill node's KV reached the decode node: {@code transferNanos} from its first byte to the acknowledgement
     * (the layers go while the prefill computes), {@code exposedNanos} the part of it after the prefill ended.
     */
    record Prefilled(long id, String node, String decodeNode, long bytes, long prefillNanos, long transferNanos,
        long exposedNanos, int attempts, int skippedBlocks) implements Msg
    {
    }

    /**
     * Prefill node → decode node: the KV of {@code prefix} (the prompt less its last token) is ready for request
     * {@code id}; the decode node answers {@link KvAccept} on {@code replyChannel}/{@code replyStream}.
     */
    record KvOffer(long id, String from, String replyChannel, int replyStream, String version, int[] prefix,
        Spec spec, String kvType, int blockTokens, long blockBytes) implements Msg
    {
    }

    /**
     * Decode node → prefill node: blocks reserved ({@code ok}; the first {@code cachedBlocks} are in its prefix
     * cache and are not sent), or refused: {@code retry} for no room now (back-pressure), else for good (version or
     * layout mismatch).
     */
    record KvAccept(long id, String node, boolean ok, boolean retry, int cachedBlocks, String reason) implements Msg
    {
    }

    /** Decode node → prefill node: every byte of the attempt arrived intact ({@code ok}), or not. */
    record KvAck(long id, String node, int attempt, boolean ok, String reason) implements Msg
    {
    }

    /** Router → node: change role; work in flight finishes where it is. */
    record SetRole(Role role) implements Msg
    {
    }
}
