package dev.strata.compute.tokenizer;

import dev.strata.compute.gguf.GgufMetadata;

/**
 * The vocabulary's encoding switches, from the model type's defaults overridden by the GGUF keys
 * {@code tokenizer.ggml.add_bos_token}, {@code add_eos_token} and {@code add_space_prefix}.
 *
 * @param addBos         prepend BOS when special tokens are added.
 * @param addEos         append EOS when special tokens are added.
 * @param addSpacePrefix SPM: prepend a space to text that starts the input or follows a special token; decoding
 *                       then drops one leading space of the first token.
 */
record TokenizerFlags(boolean addBos, boolean addEos, boolean addSpacePrefix)
{
    static TokenizerFlags fromGguf(final GgufMetadata md, final boolean defaultAddBos, final boolean defaultAddEos,
        final boolean defaultAddSpacePrefix)
    {
        return new TokenizerFlags(
            md.getBoolean("tokenizer.ggml.add_bos_token", defaultAddBos),
            md.getBoolean("tokenizer.ggml.add_eos_token", defaultAddEos),
            md.getBoolean("tokenizer.ggml.add_space_prefix", defaultAddSpacePrefix));
    }
}
