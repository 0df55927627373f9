package org.blksnap.ctrl;

import org.blksnap.engine.Errno;

/**
 * How an {@link Errno} travels over HTTP: the status code of the response that carries the error
 * body {@code {"error": {"name": "ESRCH", "errno": 3, "message": "..."}}}. The body is what counts;
 * the status is a hint for generic HTTP tools.
 */
final class ApiError {
    private ApiError() {
    }

    /** The HTTP status for an error of that name. */
    static int httpStatus(Errno errno) {
        return switch (errno) {
            case EINVAL, ENOTTY, EOVERFLOW -> 400;
            case EPERM -> 403;
            case ENOENT, ESRCH, ENODEV, ENXIO -> 404;
            case EBUSY, EALREADY, ENODATA, EFAULT, EEXIST -> 409;
            case EFBIG -> 413;
            case ENOSPC -> 507;
            case ESHUTDOWN, EAGAIN -> 503;
            case ENOTSUP -> 501;
            default -> 500;
        };
    }
}
