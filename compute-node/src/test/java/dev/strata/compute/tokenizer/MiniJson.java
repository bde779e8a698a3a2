package dev.strata.compute.tokenizer;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Just enough JSON for the golden files: objects, arrays, strings, numbers, booleans and null. */
final class MiniJson
{
    private final String s;
    private int pos;

    private MiniJson(final String s)
    {
        this.s = s;
    }

    static Object parse(final String json)
    {
        final MiniJson parser = new MiniJson(json);
        final Object value = parser.value();
        parser.skipSpace();
        if (parser.pos != json.length())
        {
            throw new IllegalArgumentException("trailing characters at " + parser.pos);
        }
        return value;
    }

    private Object value()
    {
        skipSpace();
        final char c = s.charAt(pos);
        if (c == '{')
        {
            final Map<String, Object> map = new LinkedHashMap<>();
            pos++;
            skipSpace();
            if (s.charAt(pos) == '}')
            {
                pos++;
                return map;
            }
            while (true)
            {
                skipSpace();
                final String key = string();
                skipSpace();
                expect(':');
                map.put(key, value());
                skipSpace();
                if (s.charAt(pos++) == '}')
                {
                    return map;
                }
            }
        }
        if (c == '[')
        {
            final List<Object> list = new ArrayList<>();
            pos++;
            skipSpace();
            if (s.charAt(pos) == ']')
            {
                pos++;
                return list;
            }
            while (true)
            {
                list.add(value());
                skipSpace();
                if (s.charAt(pos++) == ']')
                {
                    return list;
                }
            }
        }
        if (c == '"')
        {
            return string();
        }
        if (s.startsWith("true", pos) || s.startsWith("false", pos) || s.startsWith("null", pos))
        {
            final String word = s.startsWith("true", pos) ? "true" : s.startsWith("false", pos) ? "false" : "null";
            pos += word.length();
            return word.equals("null") ? null : Boolean.valueOf(word);
        }
        final int start = pos;
        while (pos < s.length() && "+-0123456789.eE".indexOf(s.charAt(pos)) >= 0)
        {
            pos++;
        }
        final String number = s.substring(start, pos);
        return number.contains(".") || number.contains("e") || number.contains("E") ?
            (Object)Double.valueOf(number) : (Object)Long.valueOf(number);
    }

    private String string()
    {
        expect('"');
        final StringBuilder out = new StringBuilder();
        while (true)
        {
            final char c = s.charAt(pos++);
            if (c == '"')
            {
                return out.toString();
            }
            if (c != '\\')
            {
                out.append(c);
                continue;
            }
            final char e = s.charAt(pos++);
            switch (e)
            {
                case 'n' -> out.append('\n');
                case 't' -> out.append('\t');
                case 'r' -> out.append('\r');
                case 'b' -> out.append('\b');
                case 'f' -> out.append('\f');
                case 'u' ->
                {
                    out.append((char)Integer.parseInt(s.substring(pos, pos + 4), 16));
                    pos += 4;
                }
                default -> out.append(e);
            }
        }
    }

    private void expect(final char c)
    {
        if (s.charAt(pos) != c)
        {
            throw new IllegalArgumentException("expected '" + c + "' at " + pos);
        }
        pos++;
    }

    private void skipSpace()
    {
        while (pos < s.length() && Character.isWhitespace(s.charAt(pos)))
        {
            pos++;
        }
    }

    /** The list of numbers as ints. */
    static int[] ints(final Object list)
    {
        return ((List<?>)list).stream().mapToInt(o -> ((Number)o).intValue()).toArray();
    }
}
