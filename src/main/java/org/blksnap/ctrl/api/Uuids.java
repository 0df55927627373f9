package org.blksnap.ctrl.api;

import java.util.UUID;

/**
 * Strict UUID parsing, the one used for snapshot ids on the wire and on the command line: exactly
 * the 36-character form with dashes ({@link UUID#fromString} alone also takes {@code 1-2-3-4-5}).
 * Stateless.
 */
public final class Uuids {
    /** What a UUID looks like, for messages. */
    public static final String EXAMPLE = "123e4567-e89b-12d3-a456-426614174000";

    private Uuids() {
    }

    /**
     * Parses a UUID in its canonical form (either case).
     *
     * @throws InvalidValueException if the text is not one
     */
    public static UUID parse(String text) {
        try {
            UUID id = UUID.fromString(text);
            if (id.toString().equalsIgnoreCase(text)) {
                return id;
            }
        } catch (IllegalArgumentException e) {
            // reported below, like a UUID in another form
        }
        throw new InvalidValueException(text, "is not a UUID such as " + EXAMPLE);
    }
}
