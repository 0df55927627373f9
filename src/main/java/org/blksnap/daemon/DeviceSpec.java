package org.blksnap.daemon;

import java.nio.file.Path;
import org.blksnap.ctrl.api.Sizes;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;

/**
 * A device to serve: {@code NAME=PATH[:SIZE]}. A regular file is created sparse at {@code SIZE} if it
 * is missing; an existing file or block device is used at its own size.
 *
 * @param name      the export name (letters, digits, '-', '_', '.')
 * @param path      the backing file or block device
 * @param sizeBytes size to create a missing file with, or 0
 */
public record DeviceSpec(String name, Path path, long sizeBytes) {
    public DeviceSpec {
        if (!name.matches("[A-Za-z0-9][A-Za-z0-9._-]{0,63}")) {
            throw new BlksnapException(Errno.EINVAL, "device name '" + name
                    + "' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        }
        if (name.startsWith("blksnap-image")) {
            throw new BlksnapException(Errno.EINVAL, "device name '" + name + "' is reserved for snapshot images");
        }
    }

    /** Parses {@code NAME=PATH[:SIZE]}; relative paths are resolved against {@code base}. */
    public static DeviceSpec parse(String text, Path base) {
        int eq = text.indexOf('=');
        if (eq <= 0 || eq == text.length() - 1) {
            throw new BlksnapException(Errno.EINVAL, "--device '" + text + "' must be NAME=PATH[:SIZE]");
        }
        String name = text.substring(0, eq).trim();
        String rest = text.substring(eq + 1).trim();
        long size = 0;
        int colon = rest.lastIndexOf(':');
        if (colon > 0) {
            size = Sizes.parseBytes("size of device " + name, rest.substring(colon + 1));
            rest = rest.substring(0, colon);
        }
        Path p = Path.of(rest);
        return new DeviceSpec(name, (p.isAbsolute() ? p : base.resolve(p)).normalize(), size);
    }

    @Override
    public String toString() {
        return name + "=" + path + (sizeBytes > 0 ? ":" + Sizes.format(sizeBytes) : "");
    }
}
