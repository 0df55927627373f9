package org.blksnap.engine;

/** The engine version, reported as the kernel module's VERSION ioctl does: 1.0.0.0. */
public record Version(int major, int minor, int revision, int build) {
    /** The version of this engine. */
    public static final Version CURRENT = new Version(1, 0, 0, 0);

    @Override
    public String toString() {
        return major + "." + minor + "." + revision + "." + build;
    }
}
