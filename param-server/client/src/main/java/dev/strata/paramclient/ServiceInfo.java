package dev.strata.paramclient;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;

import java.util.List;
import java.util.Map;

/**
 * The admin API's JSON bodies as records: the service writes them and {@link ParamClient} reads them, so the two
 * ends share one declaration of each body (field names in snake_case on the wire).
 */
public final class ServiceInfo
{
    private ServiceInfo()
    {
    }

    /** {@code GET /health}. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Health(String status, int models, long blocksServed)
    {
    }

    /** {@code GET /v1/endpoints}: where the block server listens. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Endpoints(String aeronDir, String ipcChannel, String udpChannel, int streamId)
    {
    }

    /**
     * One entry of {@code GET /v1/models}; {@code stable} and {@code canary} are null when unset; {@code uploading}
     * lists the versions whose upload has not committed (in progress, or abandoned until they expire).
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record ModelSummary(String name, int versions, Integer stable, Integer canary, List<Integer> uploading)
    {
    }

    /**
     * One version: state is lower case ({@code uploading}, {@code committed}, {@code active}, {@code canary},
     * {@code retired}, {@code deleted}). {@code canaryWeight} is set for a canary only; the sizes and leases only
     * in the answer of {@code GET .../versions/{v}}.
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record Version(String model, int version, String state, String manifest, Integer canaryWeight,
        Integer tensors, Long bytes, Integer blocks, Integer uniqueBlocks, Map<String, Long> leases)
    {
        /** The registry's answer to a command: no sizes. */
        public static Version of(final String model, final int version, final String state, final String manifest,
            final Integer canaryWeight)
        {
            return new Version(model, version, state, manifest, canaryWeight, null, null, null, null, null);
        }
    }

    /**
     * {@code POST /v1/models/{m}/uploads}: the version being uploaded, whether an earlier upload resumed, and whether
     * that version is committed already with this manifest (the upload then only re-sends blocks the service lacks,
     * which heals quarantined ones, and its commit changes nothing).
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record UploadBegun(int version, boolean resumed, boolean committed)
    {
    }

    /** {@code POST /v1/gc}. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record GcReport(long blocksStored, long blocksDeleted)
    {
    }

    /** {@code POST .../verify}: blocks checked, good, lost (ids) and repaired from another tier. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record VerifyReport(int blocks, int good, List<String> lost, long repaired)
    {
    }

    /** {@code POST|DELETE .../leases}: the version's leases after the call, node to expiry (ms since the epoch). */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Leases(Map<String, Long> leases)
    {
    }

    /** A block stored by {@code PUT /v1/blocks/{id}}; {@code isNew} false when it was there already. */
    public record BlockStored(String block, @com.fasterxml.jackson.annotation.JsonProperty("new") boolean isNew)
    {
    }

    /** Every error answer: {@code {"error": "..."}}. */
    public record Error(String error)
    {
    }
}
