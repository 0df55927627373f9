package org.blksnap.ctrl;

/** Where a device or image is served: the NBD URI for an export name, or null if not served. */
@FunctionalInterface
public interface ExportLocator {
    /** No NBD server: no URIs. */
    ExportLocator NONE = name -> null;

    String uri(String exportName);
}
