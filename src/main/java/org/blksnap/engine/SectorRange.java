package org.blksnap.engine;

/**
 * A range of 512-byte sectors.
 *
 * @param sectorOffset first sector, >= 0
 * @param sectorCount  number of sectors, > 0
 */
public record SectorRange(long sectorOffset, long sectorCount) {
    /** Bytes per sector. */
    public static final int SECTOR_BYTES = 512;

    public SectorRange {
        if (sectorOffset < 0) {
            throw new BlksnapException(Errno.EINVAL, "sectorOffset (" + sectorOffset + ") must be >= 0");
        }
        if (sectorCount <= 0) {
            throw new BlksnapException(Errno.EINVAL, "sectorCount (" + sectorCount + ") must be > 0");
        }
        if (sectorOffset + sectorCount < 0) {
            throw new BlksnapException(Errno.EINVAL, "range " + sectorOffset + "+" + sectorCount + " overflows");
        }
    }

    /** One past the last sector. */
    public long sectorEnd() {
        return sectorOffset + sectorCount;
    }

    public long offsetBytes() {
        return sectorOffset * SECTOR_BYTES;
    }

    public long lengthBytes() {
        return sectorCount * SECTOR_BYTES;
    }

    /** Parses {@code SECTOR:COUNT}. */
    public static SectorRange parse(String text) {
        int colon = text.indexOf(':');
        if (colon < 0) {
            throw new BlksnapException(Errno.EINVAL, "range '" + text + "' must be SECTOR:COUNT");
        }
        try {
            return new SectorRange(Long.parseLong(text.substring(0, colon).trim()),
                    Long.parseLong(text.substring(colon + 1).trim()));
        } catch (NumberFormatException e) {
            throw new BlksnapException(Errno.EINVAL, "range '" + text + "' must be SECTOR:COUNT with decimal numbers");
        }
    }

    @Override
    public String toString() {
        return sectorOffset + ":" + sectorCount;
    }
}
