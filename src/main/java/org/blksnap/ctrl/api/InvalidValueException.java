package org.blksnap.ctrl.api;

/**
 * A value that does not have the form the control API accepts: not a size, not a UUID, not a
 * sector range, not an absolute path, not {@code NAME=VALUE}, or a request that breaks one of the
 * wire's own limits. The daemon answers it with EINVAL; the {@code blksnap} tool reports it as a
 * usage error before anything is sent; blksnapd refuses such a flag.
 *
 * <p>A value's problem is kept apart from what the value was for, so that each caller names it
 * its own way: the daemon says {@code field 'id' ('x') is not a UUID ...}, the tool
 * {@code --id: 'x' is not a UUID ...}.
 */
public final class InvalidValueException extends IllegalArgumentException {
    private final String value;
    private final String rule;

    /**
     * A value that breaks a rule.
     *
     * @param value the value as it was given
     * @param rule  what is wrong, as a predicate: {@code "is not a UUID such as ..."}, {@code "must be > 0"}
     */
    public InvalidValueException(String value, String rule) {
        super("'" + value + "' " + rule);
        this.value = value;
        this.rule = rule;
    }

    /** A message complete in itself (it names the field), for rules about a whole request. */
    public InvalidValueException(String message) {
        super(message);
        this.value = null;
        this.rule = null;
    }

    /**
     * The message about {@code subject}: {@code subject ('value') rule}, for example
     * {@code field 'size' ('12Q') must be a size such as 512, 64K, 128M, 1G}; a message complete in
     * itself is returned as it is.
     */
    public String about(String subject) {
        return rule == null ? getMessage() : subject + " ('" + value + "') " + rule;
    }
}
