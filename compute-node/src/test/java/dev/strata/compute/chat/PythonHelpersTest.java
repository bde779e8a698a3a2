package dev.strata.compute.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PythonHelpersTest
{
    @Test
    void strftimeDirectives()
    {
        final ZonedDateTime t = ZonedDateTime.of(2024, 7, 6, 21, 5, 3, 120_000_000, ZoneOffset.ofHours(2));
        assertEquals("06 Jul 2024", Strftime.format("%d %b %Y", t));
        assertEquals("6 July 24", Strftime.format("%-d %B %y", t));
        assertEquals("21:05:03 09 PM 188 Sat Saturday 6 6 % 120000 +0200",
            Strftime.format("%H:%M:%S %I %p %j %a %A %w %u %% %f %z", t));
        assertEquals("%Q stays, trailing %", Strftime.format("%Q stays, trailing %", t));
    }

    @Test
    void floatReprLikePython()
    {
        assertEquals("1.0", PythonJson.floatRepr(1.0));
        assertEquals("-0.0", PythonJson.floatRepr(-0.0));
        assertEquals("0.1", PythonJson.floatRepr(0.1));
        assertEquals("0.0001", PythonJson.floatRepr(0.0001));
        assertEquals("1.5e-05", PythonJson.floatRepr(1.5e-5));
        assertEquals("1e+16", PythonJson.floatRepr(1e16));
        assertEquals("1234567890123456.8", PythonJson.floatRepr(1234567890123456.8));
        assertEquals("-2.5e+100", PythonJson.floatRepr(-2.5e100));
        assertEquals("123456789.123", PythonJson.floatRepr(123456789.123));
        assertEquals("Infinity", PythonJson.floatRepr(Double.POSITIVE_INFINITY));
    }

    @Test
    void jsonLikeJsonDumps()
    {
        final Map<Object, Object> map = new LinkedHashMap<>();
        map.put("k", Arrays.asList(1, 0.5f, null, false, new String[]{"s"}));
        map.put("\u0001\t", "\u4e2d\\");
        map.put(7, Map.of());
        assertEquals("{\"k\": [1, 0.5, null, false, [\"s\"]], \"\\u0001\\t\": \"\u4e2d\\\\\", \"7\": {}}",
            PythonJson.write(map, -1, false));
        assertEquals("[\n    1,\n    [\n        2\n    ]\n]", PythonJson.write(List.of(1, List.of(2)), 4, false));
    }

    @Test
    void pythonStrip()
    {
        assertEquals("a b", PythonCompatResolver.strip("\u00a0\t a b \u2003\n", null, true, true));
        assertEquals("a b \n", PythonCompatResolver.strip("  a b \n", null, true, false));
        assertEquals("ab", PythonCompatResolver.strip("xyabyx", "xy", true, true));
    }
}
