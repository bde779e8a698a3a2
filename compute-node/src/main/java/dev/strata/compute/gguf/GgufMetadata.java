package dev.strata.compute.gguf;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The key/value metadata of a GGUF file, keeping each value's declared GGUF type so that a file can be
 * written back with the exact types a reader such as llama.cpp expects.
 * <p>
 * Values are held as: integers up to 32 bits as {@link Integer} (UINT32 as {@link Long}), 64-bit integers as
 * {@link Long}, FLOAT32 as {@link Float}, FLOAT64 as {@link Double}, BOOL as {@link Boolean}, STRING as
 * {@link String}; arrays as {@code String[]}, {@code float[]}, {@code int[]} (all integer types up to 32
 * bits), {@code long[]}, {@code double[]}, {@code boolean[]}, or {@code Object[]} for nested arrays.
 */
public final class GgufMetadata
{
    /**
     * One metadata value.
     *
     * @param type        its GGUF type.
     * @param elementType element type when {@code type} is ARRAY, else {@code null}.
     * @param value       the value in the Java representation described on {@link GgufMetadata}.
     */
    public record Entry(GgufValueType type, GgufValueType elementType, Object value)
    {
    }

    private final Map<String, Entry> entries = new LinkedHashMap<>();

    public Set<String> keys()
    {
        return Collections.unmodifiableSet(entries.keySet());
    }

    public Map<String, Entry> entries()
    {
        return Collections.unmodifiableMap(entries);
    }

    public boolean contains(final String key)
    {
        return entries.containsKey(key);
    }

    public Entry entry(final String key)
    {
        return entries.get(key);
    }

    public Object get(final String key)
    {
        final Entry e = entries.get(key);
        return e == null ? null : e.value();
    }

    public GgufMetadata put(final String key, final GgufValueType type, final Object value)
    {
        if (type == GgufValueType.ARRAY)
        {
            throw new IllegalArgumentException("use putArray for arrays: " + key);
        }
        entries.put(key, new Entry(type, null, value));
        return this;
    }

    public GgufMetadata putArray(final String key, final GgufValueType elementType, final Object array)
    {
        entries.put(key, new Entry(GgufValueType.ARRAY, elementType, array));
        return this;
    }

    public GgufMetadata putString(final String key, final String value)
    {
        return put(key, GgufValueType.STRING, value);
    }

    public GgufMetadata putUInt32(final String key, final long value)
    {
        return put(key, GgufValueType.UINT32, value);
    }

    public GgufMetadata putFloat32(final String key, final float value)
    {
        return put(key, GgufValueType.FLOAT32, value);
    }

    public GgufMetadata putBool(final String key, final boolean value)
    {
        return put(key, GgufValueType.BOOL, value);
    }

    /** Copies one entry, type included, from another metadata set. */
    public GgufMetadata copy(final String key, final GgufMetadata from)
    {
        final Entry e = from.entries.get(key);
        if (e != null)
        {
            entries.put(key, e);
        }
        return this;
    }

    public String getString(final String key)
    {
        return required(key, String.class);
    }

    public String getString(final String key, final String defaultValue)
    {
        return contains(key) ? getString(key) : defaultValue;
    }

    public int getInt(final String key)
    {
        final long v = required(key, Number.class).longValue();
        if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE)
        {
            throw new GgufFormatException("metadata " + key + "=" + v + " does not fit an int");
        }
        return (int)v;
    }

    public int getInt(final String key, final int defaultValue)
    {
        return contains(key) ? getInt(key) : defaultValue;
    }

    public long getLong(final String key, final long defaultValue)
    {
        return contains(key) ? required(key, Number.class).longValue() : defaultValue;
    }

    public float getFloat(final String key, final float defaultValue)
    {
        return contains(key) ? required(key, Number.class).floatValue() : defaultValue;
    }

    public boolean getBoolean(final String key, final boolean defaultValue)
    {
        return contains(key) ? required(key, Boolean.class) : defaultValue;
    }

    public String[] getStringArray(final String key)
    {
        return required(key, String[].class);
    }

    public float[] getFloatArray(final String key)
    {
        return required(key, float[].class);
    }

    public int[] getIntArray(final String key)
    {
        return required(key, int[].class);
    }

    private <T> T required(final String key, final Class<T> type)
    {
        final Entry e = entries.get(key);
        if (e == null)
        {
            throw new GgufFormatException("missing metadata key " + key);
        }
        if (!type.isInstance(e.value()))
        {
            throw new GgufFormatException("metadata " + key + " has type " + e.type() +
                (e.elementType() != null ? "[" + e.elementType() + "]" : "") + ", expected " + type.getSimpleName());
        }
        return type.cast(e.value());
    }
}
