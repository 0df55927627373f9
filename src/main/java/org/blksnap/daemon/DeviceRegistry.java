package org.blksnap.daemon;

import static org.blksnap.daemon.DeviceRegistryDescriptor.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.zip.CRC32C;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The registry of devices added at run time, {@code DATA_DIR/devices} (layout and crash safety:
 * {@link DeviceRegistryDescriptor}). Writing is two steps, so a caller can act between them and
 * stay all-or-nothing: {@link #prepare} writes and forces the new content beside the file, then
 * {@link Pending#commit} renames it into place and forces the directory (or {@link Pending#abort}
 * drops it).
 *
 * <p>Not thread-safe: its one user ({@link DeviceManager}) serialises every call.
 */
final class DeviceRegistry {
    private static final Logger LOG = LoggerFactory.getLogger(DeviceRegistry.class);

    /**
     * One registered device.
     *
     * @param name      the device name
     * @param path      its backing file or block device, absolute
     * @param sizeBytes its size when it was added (for messages; a missing file is never re-created)
     * @param readOnly  served read-only over NBD
     */
    record Entry(String name, Path path, long sizeBytes, boolean readOnly) {
        Entry(String name, Path path, long sizeBytes) {
            this(name, path, sizeBytes, false);
        }
    }

    /** The file cannot be read as a registry: torn, corrupted, or of another version. */
    static final class CorruptException extends IOException {
        CorruptException(String message) {
            super(message);
        }
    }

    /** New content written beside the file, not yet in place. */
    interface Pending {
        /** Renames the new content over the file and forces the directory. */
        void commit() throws IOException;

        /** Drops the new content; the file stays as it was. Never throws. */
        void abort();
    }

    private final Path dir;
    private final Path file;
    private final Path newFile;

    DeviceRegistry(Path dataDir) {
        this.dir = dataDir;
        this.file = dataDir.resolve(FILE_NAME);
        this.newFile = dataDir.resolve(NEW_FILE_NAME);
    }

    Path file() {
        return file;
    }

    /**
     * Reads the registry; none if the file does not exist. A leftover {@code devices.new} (a write
     * cut short by a crash) is deleted unread.
     *
     * @throws CorruptException if the file exists but is not a valid registry, naming it and what is wrong
     * @throws IOException      if it cannot be read
     */
    List<Entry> load() throws IOException {
        if (Files.deleteIfExists(newFile)) {
            LOG.info("deleted {}: an update of the device registry that a crash cut short (the registry is {})",
                    newFile, file);
        }
        long length;
        try {
            length = Files.size(file);
        } catch (NoSuchFileException e) {
            return List.of();
        }
        if (length > MAX_FILE_BYTES) {
            throw new CorruptException(file + " is " + length + " bytes, more than a device registry can be ("
                    + MAX_FILE_BYTES + ")");
        }
        return decode(Files.readAllBytes(file), file);
    }

    /**
     * Writes {@code entries} as the registry's next content beside the file and forces it to disk.
     *
     * @throws IllegalArgumentException if they break a bound of the layout (the caller checks first)
     * @throws IOException              if it cannot be written (nothing is left behind)
     */
    Pending prepare(List<Entry> entries) throws IOException {
        ByteBuffer bytes = encode(entries);
        try (FileChannel ch = FileChannel.open(newFile, Set.of(StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING), PosixFilePermissions.asFileAttribute(
                PosixFilePermissions.fromString("rw-------")))) {
            long position = 0;
            while (bytes.hasRemaining()) {
                position += ch.write(bytes, position);
            }
            ch.force(true);
        } catch (IOException e) {
            deleteQuietly(newFile, e);
            throw new IOException("cannot write " + newFile + " (" + bytes.limit() + " bytes): " + e.getMessage(), e);
        }
        return new Pending() {
            @Override
            public void commit() throws IOException {
                try {
                    Files.move(newFile, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    deleteQuietly(newFile, e);
                    throw new IOException("cannot rename " + newFile + " over " + file + " atomically", e);
                } catch (IOException e) {
                    deleteQuietly(newFile, e);
                    throw new IOException("cannot rename " + newFile + " over " + file + ": " + e.getMessage(), e);
                }
                // The rename is what makes the new content the registry; forcing the directory makes it
                // survive a power loss. Its failure does not undo the rename, so it is reported, not thrown.
                try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
                    d.force(true);
                } catch (IOException e) {
                    LOG.error("cannot force the directory {} after renaming the device registry into it: {};"
                            + " the update may be lost at a power failure", dir, e.toString());
                }
            }

            @Override
            public void abort() {
                deleteQuietly(newFile, null);
            }
        };
    }

    private static void deleteQuietly(Path p, Exception failure) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException e) {
            if (failure != null) {
                failure.addSuppressed(e);
            } else {
                LOG.warn("cannot delete {}: {}", p, e.toString());
            }
        }
    }

    /**
     * The file's bytes for these entries.
     *
     * @throws IllegalArgumentException naming the entry if a name or path is too long, there are too
     *                                  many entries, or the body would be too large
     */
    static ByteBuffer encode(List<Entry> entries) {
        if (entries.size() > MAX_ENTRIES) {
            throw new IllegalArgumentException("entries (" + entries.size() + ") must be <= " + MAX_ENTRIES);
        }
        List<byte[]> names = new ArrayList<>();
        List<byte[]> paths = new ArrayList<>();
        // Entry flags only when needed: a registry without them stays readable by a blksnapd that predates them.
        boolean entryFlags = entries.stream().anyMatch(Entry::readOnly);
        long body = 0;
        for (Entry e : entries) {
            byte[] name = e.name().getBytes(StandardCharsets.UTF_8);
            byte[] path = e.path().toString().getBytes(StandardCharsets.UTF_8);
            if (name.length == 0 || name.length > MAX_NAME_BYTES) {
                throw new IllegalArgumentException("name of device " + e.name() + " (" + name.length
                        + " bytes) must be 1 to " + MAX_NAME_BYTES + " bytes");
            }
            if (path.length == 0 || path.length > MAX_PATH_BYTES) {
                throw new IllegalArgumentException("path of device " + e.name() + " (" + path.length
                        + " bytes) must be 1 to " + MAX_PATH_BYTES + " bytes");
            }
            names.add(name);
            paths.add(path);
            body += ENTRY_FIXED_LENGTH + name.length + path.length + (entryFlags ? ENTRY_FLAGS_LENGTH : 0);
        }
        if (body > MAX_BODY_BYTES) {
            throw new IllegalArgumentException("the device registry (" + body + " bytes) must be <= " + MAX_BODY_BYTES);
        }
        ByteBuffer b = ByteBuffer.allocate(HEADER_LENGTH + (int) body + CRC_LENGTH);
        b.putInt(MAGIC_OFFSET, MAGIC);
        b.putShort(VERSION_OFFSET, (short) VERSION);
        b.putShort(FLAGS_OFFSET, (short) (entryFlags ? FLAG_ENTRY_FLAGS : FLAGS_NONE));
        b.putInt(ENTRY_COUNT_OFFSET, entries.size());
        b.putInt(BODY_LENGTH_OFFSET, (int) body);
        b.position(HEADER_LENGTH);
        for (int i = 0; i < entries.size(); i++) {
            b.putShort((short) names.get(i).length).put(names.get(i));
            b.putShort((short) paths.get(i).length).put(paths.get(i));
            b.putLong(entries.get(i).sizeBytes());
            if (entryFlags) {
                b.putShort((short) (entries.get(i).readOnly() ? ENTRY_FLAG_READ_ONLY : 0));
            }
        }
        CRC32C crc = new CRC32C();
        crc.update(b.array(), 0, b.position());
        b.putInt((int) crc.getValue());
        return b.flip();
    }

    /**
     * Reads the entries from a file's bytes, checking everything before it trusts a length.
     *
     * @param file for messages
     * @throws CorruptException naming the file and the first check that failed
     */
    static List<Entry> decode(byte[] bytes, Path file) throws CorruptException {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        if (bytes.length < HEADER_LENGTH + CRC_LENGTH) {
            throw corrupt(file, "it is " + bytes.length + " bytes, shorter than the smallest registry ("
                    + (HEADER_LENGTH + CRC_LENGTH) + "): truncated");
        }
        int magic = b.getInt(MAGIC_OFFSET);
        if (magic != MAGIC) {
            throw corrupt(file, "it does not start with the registry's magic number (0x" + Integer.toHexString(magic)
                    + ", expected 0x" + Integer.toHexString(MAGIC) + ")");
        }
        int version = Short.toUnsignedInt(b.getShort(VERSION_OFFSET));
        if (version != VERSION) {
            throw corrupt(file, "it has layout version " + version + "; this blksnapd reads version " + VERSION
                    + (version > VERSION ? " (written by a newer blksnapd?)" : ""));
        }
        long body = Integer.toUnsignedLong(b.getInt(BODY_LENGTH_OFFSET));
        if (body > MAX_BODY_BYTES || HEADER_LENGTH + body + CRC_LENGTH != bytes.length) {
            throw corrupt(file, "its header says " + body + " bytes of entries, but the file is " + bytes.length
                    + " bytes: truncated or extended");
        }
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, HEADER_LENGTH + (int) body);
        int stored = b.getInt(HEADER_LENGTH + (int) body);
        if (stored != (int) crc.getValue()) {
            throw corrupt(file, "its CRC32C does not match (stored 0x" + Integer.toHexString(stored) + ", computed 0x"
                    + Long.toHexString(crc.getValue()) + "): torn or corrupted");
        }
        int flags = Short.toUnsignedInt(b.getShort(FLAGS_OFFSET));
        if ((flags & ~FLAG_ENTRY_FLAGS) != 0) {
            throw corrupt(file, "it has flags 0x" + Integer.toHexString(flags) + " that this blksnapd does not know");
        }
        long count = Integer.toUnsignedLong(b.getInt(ENTRY_COUNT_OFFSET));
        if (count > MAX_ENTRIES) {
            throw corrupt(file, "it says " + count + " entries, more than " + MAX_ENTRIES);
        }
        int end = HEADER_LENGTH + (int) body;
        b.position(HEADER_LENGTH).limit(end);
        List<Entry> entries = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (int i = 0; i < count; i++) {
            String name = string(b, MAX_NAME_BYTES, file, "name of entry " + i);
            Path path;
            try {
                path = Path.of(string(b, MAX_PATH_BYTES, file, "path of entry " + i));
            } catch (java.nio.file.InvalidPathException e) {
                throw corrupt(file, "the path of entry " + i + " is not a path: " + e.getReason());
            }
            if (b.remaining() < Long.BYTES) {
                throw corrupt(file, "entry " + i + " ends before its size");
            }
            long size = b.getLong();
            boolean readOnly = false;
            if ((flags & FLAG_ENTRY_FLAGS) != 0) {
                if (b.remaining() < ENTRY_FLAGS_LENGTH) {
                    throw corrupt(file, "entry " + i + " ends before its flags");
                }
                int entryFlags = Short.toUnsignedInt(b.getShort());
                if ((entryFlags & ~ENTRY_FLAG_READ_ONLY) != 0) {
                    throw corrupt(file, "entry " + i + " has flags 0x" + Integer.toHexString(entryFlags)
                            + " that this blksnapd does not know");
                }
                readOnly = (entryFlags & ENTRY_FLAG_READ_ONLY) != 0;
            }
            if (!path.isAbsolute() || size < 0 || name.isEmpty()) {
                throw corrupt(file, "entry " + i + " (" + name + "=" + path + ", " + size + " bytes) is not valid");
            }
            if (!names.add(name)) {
                throw corrupt(file, "device " + name + " is listed twice");
            }
            entries.add(new Entry(name, path, size, readOnly));
        }
        if (b.hasRemaining()) {
            throw corrupt(file, b.remaining() + " bytes follow the last of its " + count + " entries");
        }
        return List.copyOf(entries);
    }

    private static String string(ByteBuffer b, int maxBytes, Path file, String what) throws CorruptException {
        if (b.remaining() < Short.BYTES) {
            throw corrupt(file, "the " + what + " is cut off");
        }
        int length = Short.toUnsignedInt(b.getShort());
        if (length > maxBytes || length > b.remaining()) {
            throw corrupt(file, "the " + what + " says " + length + " bytes (at most " + maxBytes + ", "
                    + b.remaining() + " left)");
        }
        ByteBuffer slice = b.slice(b.position(), length);
        b.position(b.position() + length);
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(slice).toString();
        } catch (CharacterCodingException e) {
            throw corrupt(file, "the " + what + " is not UTF-8");
        }
    }

    private static CorruptException corrupt(Path file, String what) {
        return new CorruptException("the device registry " + file + " cannot be read: " + what + ". blksnapd does not"
                + " start without the devices added at run time that it lists: restore the file from a backup, or move"
                + " it away to start without them (then add them again with 'blksnap device add')");
    }
}
