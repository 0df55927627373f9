package org.blksnap.nbd;

import java.util.Objects;

/**
 * An entry of the export list ({@code NBD_OPT_LIST}).
 *
 * @param name        the export name, non-empty, at most 4096 bytes of UTF-8
 * @param description a human-readable description, possibly empty
 */
public record ExportInfo(String name, String description) {
    public ExportInfo {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(description, "description");
    }
}
