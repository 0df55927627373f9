package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonProperty;

/**
 * A range of 512-byte sectors on the wire: {@code {"sector": S, "count": N}}, also accepted as the
 * string {@code "S:N"} (the command line's spelling). Written as the object. Only the form is
 * checked here; whether the numbers make sense (S >= 0, N > 0, inside a device) is the engine's
 * business.
 *
 * @param sector first sector
 * @param count  number of sectors
 */
public record Range(long sector, long count) {
    /** What a range looks like, for messages. */
    public static final String EXPECTED = "{\"sector\": S, \"count\": N} or \"S:N\"";

    /** From the object form; both fields are required. */
    @JsonCreator(mode = JsonCreator.Mode.PROPERTIES)
    public Range(@JsonProperty("sector") long sector, @JsonProperty("count") long count) {
        this.sector = sector;
        this.count = count;
    }

    /**
     * Parses {@code SECTOR:COUNT} (decimal numbers).
     *
     * @throws InvalidValueException if the text has another form
     */
    @JsonCreator(mode = JsonCreator.Mode.DELEGATING)
    public static Range parse(String text) {
        int colon = text.indexOf(':');
        if (colon >= 0) {
            try {
                return new Range(Long.parseLong(text.substring(0, colon).trim()),
                        Long.parseLong(text.substring(colon + 1).trim()));
            } catch (NumberFormatException e) {
                // reported below
            }
        }
        throw new InvalidValueException(text, "must be SECTOR:COUNT with decimal numbers");
    }

    @Override
    public String toString() {
        return sector + ":" + count;
    }
}
