package org.blksnap.ctrl.api;

/**
 * The body of every error answer: {@code {"error": {"name": "ESRCH", "errno": 3, "message": "..."}}}.
 * The name and number are the engine's stable errno; the HTTP status is only a hint.
 */
public record ErrorReply(@Required Detail error) {
    /**
     * @param name    errno name, for example {@code ESRCH}
     * @param errno   its Linux number
     * @param message what failed and why
     */
    public record Detail(@Required String name, int errno, @Required String message) {
    }

    public static ErrorReply of(String name, int errno, String message) {
        return new ErrorReply(new Detail(name, errno, message));
    }
}
