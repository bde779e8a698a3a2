package dev.strata.serve;

import dev.strata.compute.chat.ChatTemplate;
import dev.strata.compute.engine.GenerationService;
import dev.strata.compute.tokenizer.Tokenizer;

/**
 * One model version being served: the engine that runs it and what turns text into its tokens.
 *
 * @param id        the version's name as responses report it ({@code NAME@VERSION}, or the file's name).
 * @param engine    runs its requests: an engine in this process, or the router over nodes.
 * @param tokenizer its vocabulary.
 * @param template  its chat template.
 * @param created   seconds since the epoch, for {@code /v1/models}.
 */
public record ServedModel(String id, GenerationService engine, Tokenizer tokenizer, ChatTemplate template, long created)
{
}
