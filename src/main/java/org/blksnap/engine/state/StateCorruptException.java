package org.blksnap.engine.state;

/**
 * A state file that cannot be trusted: torn, truncated, corrupted, of an unknown version or
 * describing something else. The message says which file and what is wrong; it becomes the detail
 * of the STATE_CORRUPT generation reason. Checked, so every reader must decide what to do.
 */
final class StateCorruptException extends Exception {
    StateCorruptException(String message) {
        super(message);
    }
}
