package org.blksnap.engine;

import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The seven module parameters of blksnap v1, with their names, defaults and units, readable and
 * settable at run time.
 *
 * <p>Thread-safe: a change replaces the whole {@link ParamValues} atomically, so a reader never
 * sees half of a change. Every value is validated; a bad one is refused with {@link Errno#EINVAL}
 * and a message naming the parameter, the value and the accepted range, and nothing changes.
 */
public final class Params {
    /** The parameter names, their ranges and units. */
    public enum Name {
        TRACKING_BLOCK_MINIMUM_SHIFT(12, 26, "log2 bytes"),
        TRACKING_BLOCK_MAXIMUM_COUNT(1, 1L << 30, "blocks"),
        CHUNK_MINIMUM_SHIFT(12, 26, "log2 bytes"),
        CHUNK_MAXIMUM_COUNT(1, Integer.MAX_VALUE, "chunks"),
        CHUNK_MAXIMUM_IN_CACHE(1, 1L << 20, "chunks"),
        FREE_DIFF_BUFFER_POOL_SIZE(0, 1L << 20, "buffers"),
        DIFF_STORAGE_MINIMUM(16, 1L << 40, "sectors");

        private final long min;
        private final long max;
        private final String unit;

        Name(long min, long max, String unit) {
            this.min = min;
            this.max = max;
            this.unit = unit;
        }

        /** The kernel spelling, for example {@code chunk_minimum_shift}. */
        public String paramName() {
            return name().toLowerCase(Locale.ROOT);
        }

        public long min() {
            return min;
        }

        public long max() {
            return max;
        }

        public String unit() {
            return unit;
        }

        void check(long value) {
            if (value < min || value > max) {
                throw new BlksnapException(Errno.EINVAL, paramName() + " (" + value + ") must be >= " + min
                        + " and <= " + max + " (" + unit + ")");
            }
        }

        /** The parameter with that kernel name; EINVAL naming the known ones otherwise. */
        public static Name of(String paramName) {
            for (Name n : values()) {
                if (n.paramName().equals(paramName)) {
                    return n;
                }
            }
            throw new BlksnapException(Errno.EINVAL, "unknown parameter '" + paramName + "'; known: "
                    + String.join(", ", names()));
        }

        static java.util.List<String> names() {
            return java.util.Arrays.stream(values()).map(Name::paramName).toList();
        }
    }

    private final AtomicReference<ParamValues> values;

    /** Parameters with the kernel module's defaults. */
    public Params() {
        this(ParamValues.DEFAULTS);
    }

    public Params(ParamValues initial) {
        this.values = new AtomicReference<>(initial);
    }

    /** The current values, as one consistent set. */
    public ParamValues values() {
        return values.get();
    }

    /** The current value of one parameter; EINVAL for an unknown name. */
    public long get(String name) {
        return values.get().get(name);
    }

    /**
     * Sets one parameter. Takes effect for trackers and snapshots created afterwards.
     *
     * @throws BlksnapException EINVAL for an unknown name, a value out of range, or a value that breaks
     *                          a rule between parameters (diff_storage_minimum must hold two chunks)
     */
    public void set(String name, long value) {
        values.updateAndGet(v -> v.with(name, value));
    }


    /** All parameters by kernel name, in the module's order. */
    public Map<String, Long> asMap() {
        ParamValues v = values.get();
        Map<String, Long> m = new LinkedHashMap<>();
        for (Name n : Name.values()) {
            m.put(n.paramName(), v.get(n.paramName()));
        }
        return m;
    }
}
