package dev.strata.compute.chat;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.lang.reflect.Method;
import java.time.ZonedDateTime;
import java.util.List;
import java.util.Map;
import jinjava.javax.el.CompositeELResolver;

/**
 * The one Jinjava engine chat templates run in, set up to match the Hugging Face environment
 * ({@code ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)} plus {@code raise_exception},
 * {@code strftime_now} and its {@code tojson}) that model authors test their templates against.
 * <p>
 * Jinjava settings and why:
 * <ul>
 * <li>{@code trim_blocks}/{@code lstrip_blocks} on, as in Hugging Face and llama.cpp.</li>
 * <li>{@code LegacyOverrides}: {@code {{- x -}}} whitespace control on expressions (off by default in Jinjava, which
 * would leave newlines that Python Jinja removes), strict whitespace-control parsing, Python operator precedence,
 * evaluated map-literal keys, iteration over dict keys, Python-like printing of lists and dicts. Not
 * {@code whitespaceRequiredWithinTokens}, which rejects {@code {{x}}}.</li>
 * <li>{@link PythonCompatResolver} before Jinjava's resolvers, for Python {@code str} methods.</li>
 * <li>{@code tojson} and {@code trim} replaced by Python-compatible versions.</li>
 * </ul>
 * The engine is thread-safe: each render gets its own interpreter.
 */
final class JinjaEnvironment
{
    private static final JinjavaConfig RENDER_CONFIG = config(false);
    private static final JinjavaConfig VALIDATION_CONFIG = config(true);
    private static final Jinjava JINJAVA = create();

    private JinjaEnvironment()
    {
    }

    /** Renders a template; errors are reported in the result, not thrown. */
    static RenderResult render(final String source, final Map<String, Object> bindings)
    {
        return JINJAVA.renderForResult(source, bindings, RENDER_CONFIG);
    }

    /**
     * Renders in Jinjava's validation mode, which also visits the branches not taken, so expression syntax errors
     * anywhere in the template are reported.
     */
    static RenderResult validate(final String source, final Map<String, Object> bindings)
    {
        return JINJAVA.renderForResult(source, bindings, VALIDATION_CONFIG);
    }

    /** Errors from parsing the tag structure (unclosed or mismatched blocks, unknown tags). */
    static List<TemplateError> parseErrors(final String source)
    {
        final JinjavaInterpreter interpreter = JINJAVA.newInterpreter();
        interpreter.parse(source);
        return interpreter.getErrorsCopy();
    }

    private static JinjavaConfig config(final boolean validation)
    {
        final CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonCompatResolver());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        return JinjavaConfig.newBuilder()
            .withTrimBlocks(true)
            .withLstripBlocks(true)
            .withElResolver(resolver)
            .withValidationMode(validation)
            .withLegacyOverrides(LegacyOverrides.newBuilder()
                .withUseTrimmingForNotesAndExpressions(true)
                .withParseWhitespaceControlStrictly(true)
                .withUseNaturalOperatorPrecedence(true)
                .withEvaluateMapKeys(true)
                .withIterateOverMapKeys(true)
                .withUsePyishObjectMapper(true)
                .withKeepNullableLoopValues(true)
                .build())
            .build();
    }

    private static Jinjava create()
    {
        final Jinjava jinjava = new Jinjava(RENDER_CONFIG);
        jinjava.getGlobalContext().registerFunction(function("raise_exception", "raiseException", Object.class));
        jinjava.getGlobalContext().registerFunction(function("strftime_now", "strftimeNow", String.class));
        jinjava.getGlobalContext().registerFilter(new ToJsonFilter());
        jinjava.getGlobalContext().registerFilter(new TrimFilter());
        return jinjava;
    }

    private static ELFunctionDefinition function(final String name, final String method, final Class<?> parameter)
    {
        try
        {
            final Method m = JinjaEnvironment.class.getDeclaredMethod(method, parameter);
            m.setAccessible(true);
            return new ELFunctionDefinition("", name, m);
        }
        catch (final NoSuchMethodException e)
        {
            throw new IllegalStateException(e);
        }
    }

    /** {@code raise_exception(message)}: the template rejects the conversation. */
    static String raiseException(final Object message)
    {
        throw new ChatTemplateException(ChatTemplateException.Kind.RAISED,
            "chat template raised an exception: " + message);
    }

    /** {@code strftime_now(format)}: the current local time in Python {@code strftime} format. */
    static String strftimeNow(final String format)
    {
        return Strftime.format(format, ZonedDateTime.now());
    }

    /** {@code tojson(indent=None, sort_keys=False)} as Hugging Face defines it ({@code json.dumps}, not HTML-safe). */
    static final class ToJsonFilter implements Filter
    {
        @Override
        public String getName()
        {
            return "tojson";
        }

        @Override
        public Object filter(final Object var, final JinjavaInterpreter interpreter, final String... args)
        {
            final int indent = args.length > 0 && args[0] != null ? Integer.parseInt(args[0].trim()) : -1;
            return PythonJson.write(var, indent, false);
        }

        @Override
        public Object filter(
            final Object var, final JinjavaInterpreter interpreter, final Object[] args, final Map<String, Object> kwargs)
        {
            final Object indent = kwargs.containsKey("indent") ? kwargs.get("indent") : args.length > 0 ? args[0] : null;
            final Object sortKeys = kwargs.get("sort_keys");
            return PythonJson.write(var, indent instanceof Number n ? n.intValue() : -1, Boolean.TRUE.equals(sortKeys));
        }
    }

    /** {@code trim(chars=None)} with Python's {@code str.strip} semantics (Jinjava's trims only ASCII controls). */
    static final class TrimFilter implements Filter
    {
        @Override
        public String getName()
        {
            return "trim";
        }

        @Override
        public Object filter(final Object var, final JinjavaInterpreter interpreter, final String... args)
        {
            return PythonCompatResolver.strip(var == null ? "" : var.toString(),
                args.length > 0 ? args[0] : null, true, true);
        }
    }
}
