package dev.strata.compute.chat;

import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.TextStyle;
import java.util.Locale;

/**
 * Python's {@code time.strftime} directives (C locale), for the {@code strftime_now} function some templates use
 * (Llama 3.1+ writes "Today Date: 26 Jul 2024" with {@code strftime_now("%d %b %Y")}). Supports {@code %a %A %b %B
 * %d %e %f %H %I %j %m %M %p %S %u %w %y %Y %z %Z %%} and glibc's {@code -} flag ({@code %-d}: no padding); other
 * directives are copied unchanged.
 */
final class Strftime
{
    private Strftime()
    {
    }

    static String format(final String pattern, final ZonedDateTime t)
    {
        final StringBuilder out = new StringBuilder();
        for (int i = 0; i < pattern.length(); i++)
        {
            final char c = pattern.charAt(i);
            if (c != '%' || i + 1 >= pattern.length())
            {
                out.append(c);
                continue;
            }
            int j = i + 1;
            final boolean noPad = pattern.charAt(j) == '-' && j + 1 < pattern.length();
            if (noPad)
            {
                j++;
            }
            final String value = directive(pattern.charAt(j), t, noPad);
            if (value == null)
            {
                out.append(pattern, i, j + 1);
            }
            else
            {
                out.append(value);
            }
            i = j;
        }
        return out.toString();
    }

    private static String directive(final char d, final ZonedDateTime t, final boolean noPad)
    {
        return switch (d)
        {
            case 'a' -> t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
            case 'A' -> t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
            case 'b', 'h' -> t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH);
            case 'B' -> t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH);
            case 'd' -> pad(t.getDayOfMonth(), 2, noPad);
            case 'e' -> noPad ? Integer.toString(t.getDayOfMonth()) : String.format("%2d", t.getDayOfMonth());
            case 'f' -> pad(t.getNano() / 1000, 6, noPad);
            case 'H' -> pad(t.getHour(), 2, noPad);
            case 'I' -> pad(t.getHour() % 12 == 0 ? 12 : t.getHour() % 12, 2, noPad);
            case 'j' -> pad(t.getDayOfYear(), 3, noPad);
            case 'm' -> pad(t.getMonthValue(), 2, noPad);
            case 'M' -> pad(t.getMinute(), 2, noPad);
            case 'p' -> t.getHour() < 12 ? "AM" : "PM";
            case 'S' -> pad(t.getSecond(), 2, noPad);
            case 'u' -> Integer.toString(t.getDayOfWeek().getValue());
            case 'w' -> Integer.toString(t.getDayOfWeek().getValue() % 7);
            case 'y' -> pad(t.getYear() % 100, 2, noPad);
            case 'Y' -> Integer.toString(t.getYear());
            case 'z' -> DateTimeFormatter.ofPattern("xx", Locale.ROOT).format(t);
            case 'Z' -> DateTimeFormatter.ofPattern("zzz", Locale.ENGLISH).format(t);
            case '%' -> "%";
            default -> null;
        };
    }

    private static String pad(final int value, final int width, final boolean noPad)
    {
        final String s = Integer.toString(value);
        return noPad || s.length() >= width ? s : "0".repeat(width - s.length()) + s;
    }
}
