package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.time.Instant;
import java.util.List;

/**
 * Where a repository's files live: a flat namespace of immutable objects named by keys such as
 * {@code packs/<32 hex>.pack} ({@link RepositoryLayout}). Every file access of the repository goes
 * through this seam; {@link DirectoryStore} keeps objects as files, {@link S3Store} as S3 objects.
 *
 * <p><b>Visible only when complete</b>: an object written by {@link #put} or {@link #create} is
 * either absent (or its previous content) or whole to every reader, also after a crash; on a
 * directory by write-to-tmp, fsync, rename and fsync of the directory, on S3 because a PUT or a
 * completed multipart upload is atomic. When {@code put} or {@link Upload#complete} returns, the
 * object is durable.
 *
 * <p>Thread-safe: any number of threads may call any method at once. Every failure is a
 * {@link RepositoryException} naming the object ({@link #describe}) and what was being done:
 * {@code NOT_FOUND} for a missing object where one is read, {@code NO_SPACE} for a full
 * filesystem, {@code IO} for the rest (an S3 error carries the service's error code and status).
 */
interface ObjectStore extends AutoCloseable {
    /** The store's location for messages: a directory path or {@code s3://bucket/prefix}. */
    String location();

    /** The full name of {@code key} for messages. */
    String describe(String key);

    /**
     * The whole object.
     *
     * @param maxBytes the largest object accepted: a larger one is DAMAGED (never allocated)
     * @throws RepositoryException NOT_FOUND no such object; DAMAGED larger than {@code maxBytes}
     */
    byte[] get(String key, int maxBytes) throws RepositoryException;

    /**
     * {@code lengthBytes} bytes at {@code offsetBytes} (a byte range); fewer when the object ends
     * first (the buffer's limit says how many).
     *
     * @throws RepositoryException NOT_FOUND no such object
     */
    ByteBuffer read(String key, long offsetBytes, int lengthBytes) throws RepositoryException;

    /**
     * The size of an object in bytes.
     *
     * @throws RepositoryException NOT_FOUND no such object
     */
    long sizeBytes(String key) throws RepositoryException;

    /** Writes a whole object, replacing any object of that key; durable and visible when this returns. */
    void put(String key, byte[] content) throws RepositoryException;

    /**
     * Writes a whole object only if none of that key exists (a manifest never replaces another).
     *
     * @return false when the key existed already (nothing written)
     */
    boolean putIfAbsent(String key, byte[] content) throws RepositoryException;

    /**
     * Starts an object written in sequence (a pack); invisible until {@link Upload#complete}.
     *
     * @param writerTag names the writer in what an unfinished upload leaves (see {@link #dropIncomplete})
     */
    Upload create(String key, String writerTag) throws RepositoryException;

    /** Every object whose key starts with {@code prefix} (for example {@code "points/"}), in key order. */
    List<Entry> list(String prefix) throws RepositoryException;

    /** Removes an object; a missing one is no error. */
    void delete(String key) throws RepositoryException;

    /**
     * Drops what writers left unfinished: incomplete uploads whose writer tag is {@code writerTag}
     * (a writer known dead), and any begun before {@code before} (null: none by age). On a
     * directory these are files in {@code tmp/}; on S3 incomplete multipart uploads.
     *
     * @return how many were dropped
     */
    int dropIncomplete(String writerTag, Instant before) throws RepositoryException;

    /**
     * Requests made so far by kind ({@code PUT}, {@code GET}, {@code HEAD}, {@code LIST},
     * {@code DELETE}, {@code MULTIPART} for the create/part/complete requests of multipart uploads)
     * and {@code PUT_BYTES}/{@code GET_BYTES}: what an S3 bill counts. Thread-safe.
     */
    java.util.Map<String, Long> requestCounts();

    /** Releases connections and open files. */
    @Override
    void close();

    /** One listed object: its key, size and the store's time of its last write. */
    record Entry(String key, long sizeBytes, Instant lastModified) {
    }

    /**
     * An object being written front to back. Not thread-safe: one thread at a time (the chunk
     * store's lock) appends; {@link #complete} or {@link #abort} ends it.
     */
    interface Upload {
        /** Appends the buffer's remaining bytes. May block while earlier parts are being sent (bounded memory). */
        void write(ByteBuffer buf) throws RepositoryException;

        /** Bytes appended so far. */
        long positionBytes();

        /** Makes the object durable and visible under its key; the upload is over. */
        void complete() throws RepositoryException;

        /** Drops what was written: nothing becomes visible. Never throws. */
        void abort();
    }
}
