package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * A repository's objects as files under a directory: key {@code a/b} is the file {@code DIR/a/b}.
 * Whole objects and uploads are written to {@code DIR/tmp/<writer tag>.<random>.<name>}, fsynced,
 * renamed into place and the directory fsynced ({@link Durable}); a reader never sees a partial
 * file. Read channels of immutable objects (packs) are opened once and kept until {@link #close}.
 * Thread-safe.
 */
final class DirectoryStore implements ObjectStore {
    private final Path dir;
    private final ConcurrentMap<String, FileChannel> channels = new ConcurrentHashMap<>();

    DirectoryStore(Path dir) {
        this.dir = dir;
    }

    Path dir() {
        return dir;
    }

    @Override
    public String location() {
        return dir.toString();
    }

    @Override
    public String describe(String key) {
        return dir.resolve(key).toString();
    }

    private Path path(String key) {
        return dir.resolve(key);
    }

    private Path tmpFile(String writerTag, String key) throws IOException {
        Path tmp = dir.resolve(RepositoryLayout.TMP);
        Files.createDirectories(tmp);
        return tmp.resolve(writerTag + "." + UUID.randomUUID().toString().substring(0, 8) + "."
                + key.substring(key.lastIndexOf('/') + 1));
    }

    @Override
    public byte[] get(String key, int maxBytes) throws RepositoryException {
        Path f = path(key);
        try {
            long size = Files.size(f);
            if (size > maxBytes) {
                throw new RepositoryException(RepositoryException.Code.DAMAGED, f + " is " + size
                        + " bytes, more than the " + maxBytes + " such a file may have");
            }
            return Files.readAllBytes(f);
        } catch (NoSuchFileException e) {
            throw notFound(key);
        } catch (IOException e) {
            throw RepositoryException.io("cannot read " + f, e);
        }
    }

    private RepositoryException notFound(String key) {
        return new RepositoryException(RepositoryException.Code.NOT_FOUND, describe(key) + " does not exist");
    }

    @Override
    public ByteBuffer read(String key, long offsetBytes, int lengthBytes) throws RepositoryException {
        FileChannel ch = channel(key);
        ByteBuffer buf = ByteBuffer.allocate(lengthBytes);
        long pos = offsetBytes;
        try {
            while (buf.hasRemaining()) {
                int n = ch.read(buf, pos);
                if (n < 0) {
                    break;
                }
                pos += n;
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot read " + lengthBytes + " bytes at offset " + offsetBytes + " of "
                    + describe(key), e);
        }
        return buf.flip();
    }

    private FileChannel channel(String key) throws RepositoryException {
        FileChannel ch = channels.get(key);
        if (ch != null) {
            return ch;
        }
        try {
            FileChannel opened = FileChannel.open(path(key), StandardOpenOption.READ);
            FileChannel raced = channels.putIfAbsent(key, opened);
            if (raced != null) {
                opened.close();
                return raced;
            }
            return opened;
        } catch (NoSuchFileException e) {
            throw notFound(key);
        } catch (IOException e) {
            throw RepositoryException.io("cannot open " + describe(key), e);
        }
    }

    @Override
    public long sizeBytes(String key) throws RepositoryException {
        try {
            return Files.size(path(key));
        } catch (NoSuchFileException e) {
            throw notFound(key);
        } catch (IOException e) {
            throw RepositoryException.io("cannot stat " + describe(key), e);
        }
    }

    @Override
    public void put(String key, byte[] content) throws RepositoryException {
        Path target = path(key);
        try {
            Files.createDirectories(target.getParent());
            Durable.writeAtomically(tmpFile("put", key), target, content);
        } catch (IOException e) {
            throw RepositoryException.io("cannot write " + target, e);
        }
    }

    @Override
    public boolean putIfAbsent(String key, byte[] content) throws RepositoryException {
        Path target = path(key);
        Path tmp = null;
        try {
            Files.createDirectories(target.getParent());
            tmp = tmpFile("put", key);
            Durable.writeDurably(tmp, content);
            try {
                Files.createLink(target, tmp); // a hard link fails where a rename would replace
            } catch (FileAlreadyExistsException e) {
                return false;
            }
            Durable.fsyncDirectory(target.getParent());
            return true;
        } catch (IOException e) {
            throw RepositoryException.io("cannot write " + target, e);
        } finally {
            if (tmp != null) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException e) {
                    // a stray tmp file is dropped by the next dropIncomplete
                }
            }
        }
    }

    @Override
    public Upload create(String key, String writerTag) throws RepositoryException {
        Path target = path(key);
        Path tmp;
        FileChannel ch;
        try {
            tmp = tmpFile(writerTag, key);
            ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw RepositoryException.io("cannot create a file for " + target + " in " + dir.resolve(RepositoryLayout.TMP), e);
        }
        return new FileUpload(target, tmp, ch);
    }

    private static final class FileUpload implements Upload {
        private final Path target;
        private final Path tmp;
        private final FileChannel ch;
        private long positionBytes;

        FileUpload(Path target, Path tmp, FileChannel ch) {
            this.target = target;
            this.tmp = tmp;
            this.ch = ch;
        }

        @Override
        public void write(ByteBuffer buf) throws RepositoryException {
            int length = buf.remaining();
            long at = positionBytes;
            try {
                while (buf.hasRemaining()) {
                    positionBytes += ch.write(buf, positionBytes);
                }
            } catch (IOException e) {
                throw RepositoryException.io("cannot write " + length + " bytes at offset " + at + " of " + tmp, e);
            }
        }

        @Override
        public long positionBytes() {
            return positionBytes;
        }

        @Override
        public void complete() throws RepositoryException {
            try (FileChannel c = ch) {
                c.force(true);
            } catch (IOException e) {
                throw RepositoryException.io("cannot write " + tmp, e);
            }
            try {
                Files.createDirectories(target.getParent());
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
                Durable.fsyncDirectory(target.getParent());
            } catch (IOException e) {
                throw RepositoryException.io("cannot move " + tmp + " to " + target, e);
            }
        }

        @Override
        public void abort() {
            try {
                ch.close();
            } catch (IOException e) {
                // nothing refers to it
            }
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException e) {
                // dropIncomplete removes it later
            }
        }
    }

    @Override
    public List<Entry> list(String prefix) throws RepositoryException {
        int slash = prefix.lastIndexOf('/');
        String sub = slash < 0 ? "" : prefix.substring(0, slash);
        String namePrefix = prefix.substring(slash + 1);
        Path d = sub.isEmpty() ? dir : dir.resolve(sub);
        List<Entry> entries = new ArrayList<>();
        try (DirectoryStream<Path> s = Files.newDirectoryStream(d)) {
            for (Path p : s) {
                String name = p.getFileName().toString();
                if (!name.startsWith(namePrefix) || !Files.isRegularFile(p)) {
                    continue;
                }
                try {
                    entries.add(new Entry(sub.isEmpty() ? name : sub + "/" + name, Files.size(p),
                            Files.getLastModifiedTime(p).toInstant()));
                } catch (NoSuchFileException e) {
                    // removed meanwhile
                }
            }
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            throw RepositoryException.io("cannot list " + d, e);
        }
        entries.sort(Comparator.comparing(Entry::key));
        return entries;
    }

    @Override
    public void delete(String key) throws RepositoryException {
        Path f = path(key);
        FileChannel ch = channels.remove(key);
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException e) {
                // read-only
            }
        }
        try {
            if (Files.deleteIfExists(f)) {
                Durable.fsyncDirectory(f.getParent());
            }
        } catch (IOException e) {
            throw RepositoryException.io("cannot remove " + f, e);
        }
    }

    @Override
    public int dropIncomplete(String writerTag, Instant before) throws RepositoryException {
        Path tmp = dir.resolve(RepositoryLayout.TMP);
        int dropped = 0;
        try (DirectoryStream<Path> s = Files.newDirectoryStream(tmp)) {
            for (Path p : s) {
                boolean mine = writerTag != null && p.getFileName().toString().startsWith(writerTag + ".");
                try {
                    if (mine || (before != null && Files.getLastModifiedTime(p).toInstant().isBefore(before))) {
                        if (Files.deleteIfExists(p)) {
                            dropped++;
                        }
                    }
                } catch (NoSuchFileException e) {
                    // removed meanwhile
                }
            }
        } catch (NoSuchFileException e) {
            return 0;
        } catch (IOException e) {
            throw RepositoryException.io("cannot clean " + tmp, e);
        }
        return dropped;
    }

    /** A directory bills nothing: no counts. */
    @Override
    public java.util.Map<String, Long> requestCounts() {
        return java.util.Map.of();
    }

    @Override
    public void close() {
        for (FileChannel ch : channels.values()) {
            try {
                ch.close();
            } catch (IOException e) {
                // read-only channels: nothing to lose
            }
        }
        channels.clear();
    }
}
