package org.blksnap.daemon;

import java.nio.file.Path;
import java.util.Objects;
import org.blksnap.ctrl.DeviceAdmin;
import org.blksnap.ctrl.api.InvalidValueException;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.ctrl.api.Sizes;

/**
 * A device declared for this run: {@code NAME=PATH[:SIZE]} from {@code --device}, the config
 * file, or the default disk0. The backing store is opened by the rules of {@link BackingStores}
 * (the same as {@code blksnap device add}); whether the name is valid and free is the engine's to
 * judge when the device is added.
 *
 * @param name      the export name
 * @param path      the backing file or block device, absolute
 * @param sizeBytes size to create a missing file with (and that an existing one must have), or 0
 * @param origin    where it was declared
 * @param readOnly  served read-only over NBD ({@code :ro})
 */
public record DeviceSpec(String name, Path path, long sizeBytes, DeviceAdmin.Origin origin, boolean readOnly) {
    public DeviceSpec {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(origin, "origin");
        path = path.toAbsolutePath().normalize();
    }

    /** A device given by {@code --device}. */
    public DeviceSpec(String name, Path path, long sizeBytes) {
        this(name, path, sizeBytes, DeviceAdmin.Origin.FLAG);
    }

    /** A writable device. */
    public DeviceSpec(String name, Path path, long sizeBytes, DeviceAdmin.Origin origin) {
        this(name, path, sizeBytes, origin, false);
    }

    /**
     * Parses {@code NAME=PATH[:SIZE]} as {@code --device} gives it; relative paths are resolved
     * against {@code base}. The one parser of that form is the wire contract's
     * ({@link Requests.DeviceAdd#parse}), which the tool's {@code device add} uses too.
     *
     * @throws InvalidValueException naming {@code --device} and the text, or the size
     */
    public static DeviceSpec parse(String text, Path base) {
        return parse(text, base, DeviceAdmin.Origin.FLAG);
    }

    /** As {@link #parse(String, Path)}, for a device declared in {@code origin}. */
    public static DeviceSpec parse(String text, Path base, DeviceAdmin.Origin origin) {
        Requests.DeviceAdd add;
        try {
            add = Requests.DeviceAdd.parse(text, base.toAbsolutePath());
        } catch (InvalidValueException e) {
            throw new InvalidValueException(e.about("--device"));
        }
        return new DeviceSpec(add.name(), add.path().path(), add.size() == null ? 0 : add.size().bytes(), origin,
                add.readOnlyRequested());
    }

    @Override
    public String toString() {
        return name + "=" + path + (sizeBytes > 0 ? ":" + Sizes.format(sizeBytes) : "")
                + (readOnly ? Requests.DeviceAdd.READ_ONLY_SUFFIX : "");
    }
}
