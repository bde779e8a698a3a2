package dev.strata.compute.chat;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * Gives Jinjava the Python semantics chat templates rely on where Java differs: Python {@code str} methods
 * ({@code strip}, {@code lstrip}, {@code rstrip} with optional characters, {@code startswith}, {@code endswith},
 * {@code upper}, {@code lower}, {@code title}, {@code capitalize}, {@code split}, {@code replace}, {@code find},
 * {@code rfind}, {@code count}, {@code join}, {@code splitlines}), {@code dict.get(key, default)}, and indexing a string
 * with a (possibly negative) integer. Placed before Jinjava's own resolvers; anything else is left to them, so Java
 * methods with no Python twin still resolve as before.
 */
final class PythonCompatResolver extends ELResolver
{
    /** Returned by {@link #stringMethod} for calls it does not handle (unknown name or arity). */
    private static final Object UNRESOLVED = new Object();

    @Override
    public Object getValue(final ELContext context, final Object base, final Object property)
    {
        // Jinjava hands the index over as text ("-1"), or as a number from other call paths.
        if (base instanceof String s && isIndex(property))
        {
            final long i = Long.parseLong(property.toString());
            final long index = i < 0 ? s.length() + i : i;
            context.setPropertyResolved(true);
            return index >= 0 && index < s.length() ? String.valueOf(s.charAt((int)index)) : null;
        }
        return null;
    }

    @Override
    public Object invoke(
        final ELContext context,
        final Object base,
        final Object method,
        final Class<?>[] paramTypes,
        final Object[] params)
    {
        if (!(method instanceof String name))
        {
            return null;
        }
        final Object[] args = params == null ? new Object[0] : params;
        final Object result;
        if (base instanceof String s)
        {
            result = stringMethod(s, name, args);
        }
        else if (base instanceof Map<?, ?> map && "get".equals(name) && args.length == 2)
        {
            result = map.containsKey(args[0]) ? map.get(args[0]) : args[1];
        }
        else
        {
            return null;
        }
        if (result != UNRESOLVED)
        {
            context.setPropertyResolved(true);
            return result;
        }
        return null;
    }

    private static Object stringMethod(final String s, final String name, final Object[] args)
    {
        final int n = args.length;
        switch (name)
        {
            case "strip":
                return n <= 1 ? strip(s, charsArg(args), true, true) : UNRESOLVED;
            case "lstrip":
                return n <= 1 ? strip(s, charsArg(args), true, false) : UNRESOLVED;
            case "rstrip":
                return n <= 1 ? strip(s, charsArg(args), false, true) : UNRESOLVED;
            case "startswith":
                return n == 1 ? matchesAffix(s, args[0], true) : UNRESOLVED;
            case "endswith":
                return n == 1 ? matchesAffix(s, args[0], false) : UNRESOLVED;
            case "upper":
                return n == 0 ? s.toUpperCase(Locale.ROOT) : UNRESOLVED;
            case "lower":
                return n == 0 ? s.toLowerCase(Locale.ROOT) : UNRESOLVED;
            case "title":
                return n == 0 ? title(s) : UNRESOLVED;
            case "capitalize":
                return n == 0 ? capitalize(s) : UNRESOLVED;
            case "split":
                return n <= 2 ? split(s, n >= 1 ? args[0] : null, n == 2 ? toInt(args[1]) : -1) : UNRESOLVED;
            case "splitlines":
                return n == 0 ? splitLines(s) : UNRESOLVED;
            case "replace":
                return n == 2 || n == 3 ? replace(s, str(args[0]), str(args[1]), n == 3 ? toInt(args[2]) : -1) :
                    UNRESOLVED;
            case "find":
                return n == 1 ? (long)s.indexOf(str(args[0])) : UNRESOLVED;
            case "rfind":
                return n == 1 ? (long)s.lastIndexOf(str(args[0])) : UNRESOLVED;
            case "count":
                return n == 1 ? count(s, str(args[0])) : UNRESOLVED;
            case "join":
                return n == 1 ? join(s, args[0]) : UNRESOLVED;
            default:
                return UNRESOLVED;
        }
    }

    /** Python's {@code str.isspace()} for one character. */
    static boolean isPythonSpace(final char c)
    {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085';
    }

    /** Python's {@code strip}/{@code lstrip}/{@code rstrip}: whitespace when {@code chars} is null. */
    static String strip(final String s, final String chars, final boolean left, final boolean right)
    {
        int start = 0;
        int end = s.length();
        while (left && start < end && stripped(s.charAt(start), chars))
        {
            start++;
        }
        while (right && end > start && stripped(s.charAt(end - 1), chars))
        {
            end--;
        }
        return s.substring(start, end);
    }

    private static boolean stripped(final char c, final String chars)
    {
        return chars == null ? isPythonSpace(c) : chars.indexOf(c) >= 0;
    }

    private static String charsArg(final Object[] args)
    {
        return args.length == 0 || args[0] == null ? null : str(args[0]);
    }

    private static boolean matchesAffix(final String s, final Object affix, final boolean prefix)
    {
        if (affix instanceof Collection<?> options)
        {
            for (final Object option : options)
            {
                if (matchesAffix(s, option, prefix))
                {
                    return true;
                }
            }
            return false;
        }
        final String a = str(affix);
        return prefix ? s.startsWith(a) : s.endsWith(a);
    }

    private static String title(final String s)
    {
        final StringBuilder out = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); i++)
        {
            final char c = s.charAt(i);
            out.append(previousCased ? Character.toLowerCase(c) : Character.toUpperCase(c));
            previousCased = Character.isLetter(c);
        }
        return out.toString();
    }

    private static String capitalize(final String s)
    {
        return s.isEmpty() ? s : Character.toUpperCase(s.charAt(0)) + s.substring(1).toLowerCase(Locale.ROOT);
    }

    private static List<String> split(final String s, final Object separator, final int maxSplit)
    {
        final List<String> parts = new ArrayList<>();
        if (separator == null)
        {
            int i = 0;
            final int length = s.length();
            while (true)
            {
                while (i < length && isPythonSpace(s.charAt(i)))
                {
                    i++;
                }
                if (i >= length)
                {
                    break;
                }
                if (maxSplit >= 0 && parts.size() == maxSplit)
                {
                    parts.add(strip(s.substring(i), null, false, true));
                    break;
                }
                int j = i;
                while (j < length && !isPythonSpace(s.charAt(j)))
                {
                    j++;
                }
                parts.add(s.substring(i, j));
                i = j;
            }
            return parts;
        }
        final String sep = str(separator);
        if (sep.isEmpty())
        {
            throw new IllegalArgumentException("split: empty separator");
        }
        int from = 0;
        while (maxSplit < 0 || parts.size() < maxSplit)
        {
            final int at = s.indexOf(sep, from);
            if (at < 0)
            {
                break;
            }
            parts.add(s.substring(from, at));
            from = at + sep.length();
        }
        parts.add(s.substring(from));
        return parts;
    }

    private static List<String> splitLines(final String s)
    {
        final List<String> lines = new ArrayList<>(List.of(s.split("\r\n|\r|\n", -1)));
        // Python drops the empty string after a final line break (and returns [] for "").
        if (lines.getLast().isEmpty())
        {
            lines.removeLast();
        }
        return lines;
    }

    private static String replace(final String s, final String from, final String to, final int count)
    {
        if (count < 0)
        {
            return s.replace(from, to);
        }
        final StringBuilder out = new StringBuilder();
        int start = 0;
        int done = 0;
        while (done < count)
        {
            final int at = from.isEmpty() ? (start <= s.length() ? start : -1) : s.indexOf(from, start);
            if (at < 0)
            {
                break;
            }
            out.append(s, start, at).append(to);
            if (from.isEmpty())
            {
                if (at < s.length())
                {
                    out.append(s.charAt(at));
                }
                start = at + 1;
            }
            else
            {
                start = at + from.length();
            }
            done++;
        }
        if (start <= s.length())
        {
            out.append(s, start, s.length());
        }
        return out.toString();
    }

    private static long count(final String s, final String sub)
    {
        if (sub.isEmpty())
        {
            return s.length() + 1L;
        }
        long n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length()))
        {
            n++;
        }
        return n;
    }

    private static String join(final String separator, final Object items)
    {
        final StringBuilder out = new StringBuilder();
        final Iterable<?> iterable = items instanceof Iterable<?> it ? it :
            items instanceof Object[] array ? List.of(array) : List.of(str(items).split(""));
        boolean first = true;
        for (final Object item : iterable)
        {
            if (!first)
            {
                out.append(separator);
            }
            out.append(str(item));
            first = false;
        }
        return out.toString();
    }

    private static String str(final Object o)
    {
        return String.valueOf(o);
    }

    private static boolean isIndex(final Object property)
    {
        if (property instanceof Long || property instanceof Integer || property instanceof Short)
        {
            return true;
        }
        if (!(property instanceof String p) || p.isEmpty() || p.length() > 10)
        {
            return false;
        }
        for (int i = p.charAt(0) == '-' && p.length() > 1 ? 1 : 0; i < p.length(); i++)
        {
            if (p.charAt(i) < '0' || p.charAt(i) > '9')
            {
                return false;
            }
        }
        return true;
    }

    private static int toInt(final Object o)
    {
        if (o instanceof Number n)
        {
            return (int)Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, n.longValue()));
        }
        throw new IllegalArgumentException("expected an integer, got " + o);
    }

    @Override
    public Class<?> getType(final ELContext context, final Object base, final Object property)
    {
        return null;
    }

    @Override
    public void setValue(final ELContext context, final Object base, final Object property, final Object value)
    {
    }

    @Override
    public boolean isReadOnly(final ELContext context, final Object base, final Object property)
    {
        return false;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(final ELContext context, final Object base)
    {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(final ELContext context, final Object base)
    {
        return null;
    }
}
