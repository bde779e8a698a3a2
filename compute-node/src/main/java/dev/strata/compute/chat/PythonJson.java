package dev.strata.compute.chat;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * JSON text as Hugging Face's {@code tojson} filter writes it ({@code json.dumps(x, ensure_ascii=False)}): items
 * separated by {@code ", "} and keys by {@code ": "}, or with {@code indent} one item per line; non-ASCII kept; floats
 * in Python's {@code repr} form. Chat templates with tool definitions embed this text in the prompt, so the spacing
 * matters to the model.
 */
final class PythonJson
{
    private PythonJson()
    {
    }

    /**
     * @param value    maps, iterables, arrays, strings, numbers, booleans and null; anything else as its string.
     * @param indent   spaces per level, or negative for the single-line form.
     * @param sortKeys whether to order map keys.
     * @return the JSON text.
     */
    static String write(final Object value, final int indent, final boolean sortKeys)
    {
        final StringBuilder out = new StringBuilder();
        write(out, value, indent, sortKeys, 0);
        return out.toString();
    }

    private static void write(
        final StringBuilder out, final Object value, final int indent, final boolean sortKeys, final int level)
    {
        if (value == null)
        {
            out.append("null");
        }
        else if (value instanceof Boolean b)
        {
            out.append(b ? "true" : "false");
        }
        else if (value instanceof Double || value instanceof Float)
        {
            out.append(floatRepr(value instanceof Float f ? Double.parseDouble(Float.toString(f)) :
                (Double)value));
        }
        else if (value instanceof Number n)
        {
            out.append(n instanceof BigDecimal d ? floatRepr(d.doubleValue()) : n.toString());
        }
        else if (value instanceof Map<?, ?> map)
        {
            final List<Map.Entry<?, ?>> entries = new ArrayList<>(map.entrySet());
            if (sortKeys)
            {
                entries.sort((a, b) -> key(a.getKey()).compareTo(key(b.getKey())));
            }
            out.append('{');
            for (int i = 0; i < entries.size(); i++)
            {
                separator(out, i, indent, level + 1);
                string(out, key(entries.get(i).getKey()));
                out.append(": ");
                write(out, entries.get(i).getValue(), indent, sortKeys, level + 1);
            }
            close(out, entries.isEmpty(), indent, level, '}');
        }
        else if (value instanceof Iterable<?> || value instanceof Object[])
        {
            final Iterable<?> items = value instanceof Object[] array ? List.of(array) : (Iterable<?>)value;
            out.append('[');
            int i = 0;
            for (final Object item : items)
            {
                separator(out, i++, indent, level + 1);
                write(out, item, indent, sortKeys, level + 1);
            }
            close(out, i == 0, indent, level, ']');
        }
        else
        {
            string(out, value.toString());
        }
    }

    private static void separator(final StringBuilder out, final int index, final int indent, final int level)
    {
        if (indent < 0)
        {
            if (index > 0)
            {
                out.append(", ");
            }
            return;
        }
        if (index > 0)
        {
            out.append(',');
        }
        out.append('\n').append(" ".repeat(indent * level));
    }

    private static void close(
        final StringBuilder out, final boolean empty, final int indent, final int level, final char bracket)
    {
        if (indent >= 0 && !empty)
        {
            out.append('\n').append(" ".repeat(indent * level));
        }
        out.append(bracket);
    }

    /** Python turns non-string keys into strings: numbers as written, booleans as true/false, None as null. */
    private static String key(final Object key)
    {
        if (key instanceof String s)
        {
            return s;
        }
        if (key == null || key instanceof Boolean || key instanceof Number)
        {
            return write(key, -1, false);
        }
        return key.toString();
    }

    private static void string(final StringBuilder out, final String s)
    {
        out.append('"');
        for (int i = 0; i < s.length(); i++)
        {
            final char c = s.charAt(i);
            switch (c)
            {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default ->
                {
                    if (c < 0x20)
                    {
                        out.append(String.format("\\u%04x", (int)c));
                    }
                    else
                    {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** Python's {@code repr(float)}: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
    static String floatRepr(final double d)
    {
        if (Double.isNaN(d))
        {
            return "NaN";
        }
        if (Double.isInfinite(d))
        {
            return d > 0 ? "Infinity" : "-Infinity";
        }
        if (d == 0.0)
        {
            return 1.0 / d < 0 ? "-0.0" : "0.0";
        }
        // Double.toString gives the shortest digits that round-trip (JDK 19+), only laid out differently.
        final BigDecimal exact = new BigDecimal(Double.toString(d)).stripTrailingZeros();
        final BigInteger unscaled = exact.unscaledValue().abs();
        final String digits = unscaled.toString();
        final int exponent = digits.length() - 1 - exact.scale();
        final String sign = d < 0 ? "-" : "";
        if (exponent >= -4 && exponent < 16)
        {
            final String plain = exact.abs().toPlainString();
            return sign + (plain.indexOf('.') >= 0 ? plain : plain + ".0");
        }
        final String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        final int magnitude = Math.abs(exponent);
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (magnitude < 10 ? "0" : "") + magnitude;
    }
}
