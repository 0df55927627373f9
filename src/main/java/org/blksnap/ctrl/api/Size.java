package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

/**
 * A size in bytes on the wire: a number of bytes, or a string with a binary suffix as
 * {@link Sizes} reads it ({@code "64M"}). Written as the number. Always > 0.
 *
 * @param bytes the size in bytes, > 0
 */
public record Size(@JsonValue long bytes) {
    /** What a size looks like, for messages. */
    public static final String EXPECTED = "a size > 0 (bytes, or a string such as \"64M\")";

    /** @throws InvalidValueException if {@code bytes <= 0} */
    public Size {
        if (bytes <= 0) {
            throw new InvalidValueException(Long.toString(bytes), "must be a size > 0");
        }
    }

    /** From a number of bytes. */
    @JsonCreator(mode = JsonCreator.Mode.DELEGATING)
    public static Size ofBytes(long bytes) {
        return new Size(bytes);
    }

    /** From a string such as {@code 64M}; see {@link Sizes#parseBytes(String)}. */
    @JsonCreator(mode = JsonCreator.Mode.DELEGATING)
    public static Size parse(String text) {
        return new Size(Sizes.parseBytes(text));
    }
}
