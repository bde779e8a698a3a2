package dev.strata.compute.tokenizer;

/**
 * Token attribute bits, as llama.cpp's {@code llama_token_attr}, and their derivation from the GGUF
 * {@code tokenizer.ggml.token_type} values.
 */
final class TokenAttr
{
    static final int UNDEFINED = 0;
    static final int UNKNOWN = 1;
    static final int UNUSED = 1 << 1;
    static final int NORMAL = 1 << 2;
    static final int CONTROL = 1 << 3;
    static final int USER_DEFINED = 1 << 4;
    static final int BYTE = 1 << 5;
    /** Strip whitespace on the left of this special token when splitting it out of text. */
    static final int LSTRIP = 1 << 7;
    /** Strip whitespace on the right of this special token when splitting it out of text. */
    static final int RSTRIP = 1 << 8;

    /** GGUF token types (llama.cpp's {@code llama_token_type}). */
    static final int TYPE_UNDEFINED = 0;
    static final int TYPE_NORMAL = 1;
    static final int TYPE_UNKNOWN = 2;
    static final int TYPE_CONTROL = 3;
    static final int TYPE_USER_DEFINED = 4;
    static final int TYPE_UNUSED = 5;
    static final int TYPE_BYTE = 6;

    private TokenAttr()
    {
    }

    /** The attribute of a token of the given GGUF type; unknown types are UNDEFINED, as in llama.cpp. */
    static int fromType(final int type)
    {
        return switch (type)
        {
            case TYPE_NORMAL -> NORMAL;
            case TYPE_UNKNOWN -> UNKNOWN;
            case TYPE_CONTROL -> CONTROL;
            case TYPE_USER_DEFINED -> USER_DEFINED;
            case TYPE_UNUSED -> UNUSED;
            case TYPE_BYTE -> BYTE;
            default -> UNDEFINED;
        };
    }
}
