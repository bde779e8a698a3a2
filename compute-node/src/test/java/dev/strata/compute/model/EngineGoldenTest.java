package dev.strata.compute.model;

import dev.strata.compute.engine.Completion;
import dev.strata.compute.engine.Engine;
import dev.strata.compute.engine.FinishReason;
import dev.strata.compute.engine.GenerationRequest;
import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.sampling.SamplerConfig;
import dev.strata.compute.tensor.ThreadPool;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The golden greedy stories260K case through the engine, with F16 keys and values (the default) and F32: alone, and
 * as eight copies of the request side by side in one batch (the later ones hit the first one's cached prefix).
 */
class EngineGoldenTest
{
    @ParameterizedTest(name = "KV {0}")
    @EnumSource(KvBlockPool.KvType.class)
    void shouldReproduceGoldenGreedyTokensThroughTheEngine(final KvBlockPool.KvType kvType) throws Exception
    {
        final Path model = SharedModels.require("stories260K.gguf");
        final Path golden = SharedModels.require("golden-once-upon-a-time.json");
        final int[] prompt = SharedModels.intArray(golden, "prompt_tokens_with_bos");
        final int[] expected = SharedModels.intArray(golden, "generated_tokens");
        try (GgufFile file = GgufFile.open(model);
            GgufWeightSource weights = new GgufWeightSource(file, false);
            ThreadPool pool = new ThreadPool(2);
            Engine engine = Engine.launch(new Engine.Context().weights(weights).pool(pool).modelVersion("stories")
                .kvType(kvType).kvMemory(4L << 20).blockTokens(16).endOfGeneration(t -> false)))
        {
            final Completion alone = engine.generate(GenerationRequest.of(prompt, SamplerConfig.greedy(),
                expected.length));
            assertEquals(FinishReason.LENGTH, alone.reason());
            assertArrayEquals(expected, alone.tokens());
            final List<Engine.Handle> handles = new ArrayList<>();
            for (int i = 0; i < 8; i++)
            {
                handles.add(engine.submit(GenerationRequest.of(prompt, SamplerConfig.greedy(), expected.length),
                    c -> { }));
            }
            for (final Engine.Handle h : handles)
            {
                assertArrayEquals(expected, h.completion().get().tokens());
            }
        }
    }
}
