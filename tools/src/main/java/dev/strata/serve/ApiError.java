package dev.strata.serve;

/**
 * An error answered to an API client with an OpenAI-style body:
 * {@code {"error": {"message", "type", "param", "code"}}}.
 */
final class ApiError extends RuntimeException
{
    final int status;
    final String type;
    final String param;
    final String code;

    ApiError(final int status, final String type, final String param, final String code, final String message)
    {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request is wrong; {@code param} names the field. */
    static ApiError invalid(final String param, final String message)
    {
        return new ApiError(400, "invalid_request_error", param, null, message);
    }

    static ApiError invalid(final String param, final String code, final String message)
    {
        return new ApiError(400, "invalid_request_error", param, code, message);
    }
}
