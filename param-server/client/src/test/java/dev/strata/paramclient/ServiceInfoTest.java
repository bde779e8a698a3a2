package dev.strata.paramclient;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The admin API's bodies on the wire: snake_case names, optional fields left out, unknown fields ignored. */
class ServiceInfoTest
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ObjectMapper LENIENT = new ObjectMapper()
        .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    @Test
    void shouldWriteAVersionWithSnakeCaseNamesAndNoAbsentFields() throws Exception
    {
        assertEquals("{\"model\":\"llama\",\"version\":2,\"state\":\"canary\",\"manifest\":\"ab\",\"canary_weight\":20}",
            JSON.writeValueAsString(ServiceInfo.Version.of("llama", 2, "canary", "ab", 20)));
        assertEquals("{\"model\":\"llama\",\"version\":1,\"state\":\"active\",\"manifest\":\"cd\"}",
            JSON.writeValueAsString(ServiceInfo.Version.of("llama", 1, "active", "cd", null)));
    }

    @Test
    void shouldReadWhatTheServiceWritesAndIgnoreFieldsItAddsLater() throws Exception
    {
        final ServiceInfo.Version v = LENIENT.readValue("{\"model\":\"m\",\"version\":3,\"state\":\"retired\"," +
            "\"manifest\":\"ef\",\"tensors\":7,\"bytes\":1024,\"blocks\":9,\"unique_blocks\":8," +
            "\"leases\":{\"node-a\":42},\"added_later\":true}", ServiceInfo.Version.class);
        assertEquals(new ServiceInfo.Version("m", 3, "retired", "ef", null, 7, 1024L, 9, 8, Map.of("node-a", 42L)), v);
        final ServiceInfo.Endpoints e = LENIENT.readValue("{\"aeron_dir\":\"/dev/shm/x\",\"ipc_channel\":\"aeron:ipc\"," +
            "\"udp_channel\":\"aeron:udp?endpoint=localhost:1\",\"stream_id\":1001}", ServiceInfo.Endpoints.class);
        assertEquals(new ServiceInfo.Endpoints("/dev/shm/x", "aeron:ipc", "aeron:udp?endpoint=localhost:1", 1001), e);
        final List<ServiceInfo.ModelSummary> models = LENIENT.readValue(
            "[{\"name\":\"m\",\"versions\":2,\"stable\":1,\"canary\":null}]",
            LENIENT.getTypeFactory().constructCollectionType(List.class, ServiceInfo.ModelSummary.class));
        assertEquals(1, models.getFirst().stable());
        assertNull(models.getFirst().canary());
        assertEquals(new ServiceInfo.BlockStored("b", true), LENIENT.readValue("{\"block\":\"b\",\"new\":true}",
            ServiceInfo.BlockStored.class));
    }

    @Test
    void shouldRefuseAServerAddressThatIsNoAddress()
    {
        assertEquals("no server given (--server HOST:PORT or STRATA_SERVER)",
            assertThrows(IllegalArgumentException.class, () -> new ParamClient(" ", null)).getMessage());
    }
}
