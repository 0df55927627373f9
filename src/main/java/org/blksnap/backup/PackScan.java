package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;
import java.util.zip.CRC32C;

/** Rebuilds the chunk store's index from the trailers of the sealed packs. Stateless. */
final class PackScan {
    private PackScan() {
    }

    /**
     * The ref of every blob listed in a pack trailer under {@code packsDir}. A pack whose trailer
     * is damaged is left out and reported to {@code warn}: its blobs are then simply stored again
     * when needed, never referenced by a new point.
     */
    static Map<Sha256, Ref> index(Path packsDir, Consumer<String> warn) throws RepositoryException {
        Map<Sha256, Ref> index = new HashMap<>();
        try (DirectoryStream<Path> packs = Files.newDirectoryStream(packsDir, "*" + PackDescriptor.SUFFIX)) {
            for (Path p : packs) {
                try {
                    readTrailer(p, index);
                } catch (RepositoryException e) {
                    warn.accept(e.getMessage() + "; its chunks are not reused");
                }
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot list " + packsDir, e);
        }
        return index;
    }

    /** Adds the entries of one pack's trailer to {@code index}. */
    static void readTrailer(Path pack, Map<Sha256, Ref> index) throws RepositoryException {
        String name = pack.getFileName().toString();
        PackId id;
        try {
            id = PackId.parse(name.substring(0, name.length() - PackDescriptor.SUFFIX.length()));
        } catch (IllegalArgumentException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "pack " + pack + ": " + e.getMessage());
        }
        try (FileChannel ch = FileChannel.open(pack, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < PackDescriptor.HEADER_BYTES + PackDescriptor.FOOTER_BYTES) {
                throw damaged(pack, "is " + size + " bytes, shorter than a header and a footer");
            }
            ByteBuffer footer = BlobReader.readFully(ch, pack, size - PackDescriptor.FOOTER_BYTES, PackDescriptor.FOOTER_BYTES);
            int count = footer.getInt();
            int crc = footer.getInt();
            long trailerOffset = footer.getLong();
            if (footer.getLong() != PackDescriptor.FOOTER_MAGIC) {
                throw damaged(pack, "has no footer magic");
            }
            long trailerBytes = (long) count * PackDescriptor.ENTRY_BYTES;
            if (count < 0 || trailerOffset < PackDescriptor.HEADER_BYTES
                    || trailerOffset + trailerBytes + PackDescriptor.FOOTER_BYTES != size) {
                throw damaged(pack, "footer says " + count + " entries at offset " + trailerOffset
                        + ", which does not end the " + size + "-byte file");
            }
            ByteBuffer trailer = BlobReader.readFully(ch, pack, trailerOffset, (int) trailerBytes);
            CRC32C c = new CRC32C();
            c.update(trailer.array(), 0, (int) trailerBytes);
            if ((int) c.getValue() != crc) {
                throw damaged(pack, "trailer checksum mismatch");
            }
            for (int i = 0; i < count; i++) {
                Sha256 hash = Sha256.read(trailer);
                int kind = trailer.get() & 0xff;
                trailer.get();
                trailer.getShort();
                long offset = trailer.getInt() & 0xffffffffL;
                int length = trailer.getInt();
                if (offset + length > trailerOffset || length < PackDescriptor.BLOB_HEADER_BYTES) {
                    throw damaged(pack, "trailer entry " + i + " (" + length + " bytes at " + offset + ") is outside the blobs");
                }
                index.putIfAbsent(hash, new Ref(kind, hash, id, offset, length));
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot read pack " + pack, e);
        }
    }

    private static RepositoryException damaged(Path pack, String what) {
        return new RepositoryException(RepositoryException.Code.DAMAGED, "pack " + pack + " " + what);
    }
}
