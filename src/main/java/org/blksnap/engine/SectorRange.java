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


    @Override
    public String toString() {
        return sectorOffset + ":" + sectorCount;
    }
}
