package org.blksnap.ctrl.api;

import java.util.Locale;

/**
 * Parses and prints sizes in bytes with binary suffixes: {@code 512}, {@code 64K}, {@code 128M},
 * {@code 1G}, {@code 2T} (also {@code 64KiB}, {@code 64kb}). Shared by the daemon's flags, the
 * control API and the command-line tool, so every place accepts the same spellings. Stateless.
 */
public final class Sizes {
    /** What a size looks like, for messages. */
    public static final String EXAMPLES = "512, 64K, 128M, 1G";

    private Sizes() {
    }

    /**
     * Parses a size into bytes.
     *
     * @param what what the size is for, for the message (for example {@code size of device d0})
     * @throws InvalidValueException naming {@code what} and the text if it is not a size > 0
     */
    public static long parseBytes(String what, String text) {
        try {
            return parseBytes(text);
        } catch (InvalidValueException e) {
            throw new InvalidValueException(e.about(what));
        }
    }

    /**
     * Parses a size into bytes.
     *
     * @throws InvalidValueException if the text is not a size > 0 that fits in a long
     */
    public static long parseBytes(String text) {
        if (text == null || text.isBlank()) {
            throw new InvalidValueException(String.valueOf(text), "must be a size such as " + EXAMPLES);
        }
        String t = text.trim().toUpperCase(Locale.ROOT);
        if (t.endsWith("IB")) {
            t = t.substring(0, t.length() - 2);
        } else if (t.endsWith("B") && t.length() > 1 && !Character.isDigit(t.charAt(t.length() - 2))) {
            t = t.substring(0, t.length() - 1);
        }
        int shift = 0;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                case 'T' -> shift = 40;
                default -> shift = 0;
            }
        }
        String digits = shift == 0 ? t : t.substring(0, t.length() - 1);
        long value;
        try {
            value = Long.parseLong(digits.trim());
        } catch (NumberFormatException e) {
            throw new InvalidValueException(text, "must be a size such as " + EXAMPLES);
        }
        if (value <= 0) {
            throw new InvalidValueException(text, "must be > 0");
        }
        if (value > (Long.MAX_VALUE >> shift)) {
            throw new InvalidValueException(text, "is too large");
        }
        return value << shift;
    }

    /** A short human form: {@code 1G}, {@code 64M}, {@code 1536K}, or plain bytes. */
    public static String format(long bytes) {
        String[] units = {"T", "G", "M", "K"};
        int[] shifts = {40, 30, 20, 10};
        for (int i = 0; i < units.length; i++) {
            long unit = 1L << shifts[i];
            if (bytes >= unit && bytes % unit == 0) {
                return (bytes >> shifts[i]) + units[i];
            }
        }
        return Long.toString(bytes);
    }
}
