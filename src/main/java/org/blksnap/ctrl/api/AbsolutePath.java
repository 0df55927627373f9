package org.blksnap.ctrl.api;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;

/**
 * A path on the wire: always absolute, because the daemon's working directory is not the
 * caller's (the tool makes relative paths absolute before sending them). Normalized. Written and
 * read as a string.
 *
 * @param path an absolute, normalized path
 */
public record AbsolutePath(Path path) {
    /** @throws InvalidValueException if the path is relative */
    public AbsolutePath {
        if (!path.isAbsolute()) {
            throw new InvalidValueException(path.toString(),
                    "must be an absolute path (the daemon's working directory is not yours)");
        }
        path = path.normalize();
    }

    /** From its string form. */
    @JsonCreator(mode = JsonCreator.Mode.DELEGATING)
    public static AbsolutePath parse(String text) {
        try {
            return new AbsolutePath(Path.of(text));
        } catch (InvalidPathException e) {
            throw new InvalidValueException(text, "is not a path: " + e.getReason());
        }
    }

    /** The path made absolute against this process's working directory (for the tool). */
    public static AbsolutePath resolve(Path path) {
        return new AbsolutePath(path.toAbsolutePath());
    }

    @JsonValue
    @Override
    public String toString() {
        return path.toString();
    }
}
