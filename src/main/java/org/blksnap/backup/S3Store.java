package org.blksnap.backup;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import software.amazon.awssdk.awscore.retry.AwsRetryStrategy;
import software.amazon.awssdk.core.ResponseBytes;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.regions.providers.DefaultAwsRegionProviderChain;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3ClientBuilder;
import software.amazon.awssdk.services.s3.model.CompletedMultipartUpload;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.GetObjectResponse;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.ListObjectsV2Request;
import software.amazon.awssdk.services.s3.model.MultipartUpload;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * A repository's objects in an S3 bucket under a prefix: key {@code a/b} is the object
 * {@code PREFIX/a/b}. One client per store (the AWS SDK v2 with the JDK's HttpURLConnection
 * client); region and credentials from the SDK's default chains (environment, profiles, instance
 * metadata); with an endpoint (an S3-compatible server: MinIO, Ceph RGW, s3proxy) path-style
 * addressing and the region {@code us-east-1} when none is configured.
 *
 * <p>Retries: the SDK's standard retry strategy with {@link #MAX_ATTEMPTS} attempts and
 * exponential backoff with jitter on throttling, 5xx and connection errors. Uploads: an object up to
 * {@link #PART_BYTES} is one PUT; a larger one (a pack) a multipart upload whose parts are sent by
 * background threads while the next part fills, at most {@link #PARTS_IN_FLIGHT} parts per store at
 * once: a writer holds at most (open uploads + {@code PARTS_IN_FLIGHT}) part buffers. Every failure
 * becomes a {@link RepositoryException} naming the object and the service's error.
 *
 * <p>Thread-safe.
 */
final class S3Store implements ObjectStore {
    /** Bytes of one part of a multipart upload (S3's minimum is 5 MiB, except for the last part). */
    static final int PART_BYTES = 8 << 20;
    /** Parts being sent at once, per store. */
    static final int PARTS_IN_FLIGHT = 4;
    /** Attempts of one request, the first included. */
    static final int MAX_ATTEMPTS = 8;

    private final RepositoryLocation.S3 where;
    private final S3Client s3;
    private final String keyPrefix;
    private final Semaphore partSlots = new Semaphore(PARTS_IN_FLIGHT);
    private final ExecutorService senders = Executors.newVirtualThreadPerTaskExecutor();
    private final int partBytes;
    private final java.util.concurrent.ConcurrentMap<String, java.util.concurrent.atomic.LongAdder> counts =
            new java.util.concurrent.ConcurrentHashMap<>();

    private void count(String kind, long n) {
        counts.computeIfAbsent(kind, k -> new java.util.concurrent.atomic.LongAdder()).add(n);
    }

    @Override
    public java.util.Map<String, Long> requestCounts() {
        java.util.Map<String, Long> m = new java.util.TreeMap<>();
        counts.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }

    S3Store(RepositoryLocation.S3 where) {
        this(where, PART_BYTES);
    }

    S3Store(RepositoryLocation.S3 where, int partBytes) {
        this.where = where;
        this.partBytes = partBytes;
        this.keyPrefix = where.prefix().isEmpty() ? "" : where.prefix() + "/";
        S3ClientBuilder b = S3Client.builder()
                .httpClientBuilder(UrlConnectionHttpClient.builder()
                        .connectionTimeout(Duration.ofSeconds(10))
                        .socketTimeout(Duration.ofSeconds(60)))
                .overrideConfiguration(c -> c.retryStrategy(AwsRetryStrategy.standardRetryStrategy().toBuilder()
                        .maxAttempts(MAX_ATTEMPTS).build()))
                // S3-compatible servers (s3proxy, older Ceph RGW and MinIO) do not all take the SDK's
                // newer default trailing checksums; content is checked by our own hashes anyway
                .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
                .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED);
        if (where.endpoint() != null) {
            b.endpointOverride(where.endpoint()).forcePathStyle(true).region(regionOr(Region.US_EAST_1));
        }
        this.s3 = b.build();
    }

    private static Region regionOr(Region fallback) {
        try {
            return new DefaultAwsRegionProviderChain().getRegion();
        } catch (SdkClientException e) {
            return fallback;
        }
    }

    private String objectKey(String key) {
        return keyPrefix + key;
    }

    @Override
    public String location() {
        return where.toString();
    }

    @Override
    public String describe(String key) {
        return "s3://" + where.bucket() + "/" + objectKey(key);
    }

    private RepositoryException failed(String what, String key, SdkException e) {
        String detail;
        if (e instanceof S3Exception s && s.awsErrorDetails() != null) {
            detail = s.awsErrorDetails().errorCode() + " (HTTP " + s.statusCode() + "): " + s.awsErrorDetails().errorMessage();
        } else {
            detail = e.getMessage();
        }
        if (e instanceof NoSuchKeyException || (e instanceof S3Exception s && s.statusCode() == 404)) {
            return new RepositoryException(RepositoryException.Code.NOT_FOUND, describe(key) + " does not exist");
        }
        return new RepositoryException(RepositoryException.Code.IO, "cannot " + what + " " + describe(key)
                + (where.endpoint() != null ? " at " + where.endpoint() : "") + ": " + detail, e);
    }

    @Override
    public byte[] get(String key, int maxBytes) throws RepositoryException {
        try {
            count("GET", 1);
            ResponseBytes<GetObjectResponse> r = s3.getObjectAsBytes(g -> g.bucket(where.bucket()).key(objectKey(key))
                    .range("bytes=0-" + maxBytes));
            byte[] bytes = r.asByteArray();
            count("GET_BYTES", bytes.length);
            if (bytes.length > maxBytes) {
                throw new RepositoryException(RepositoryException.Code.DAMAGED, describe(key) + " is larger than the "
                        + maxBytes + " bytes such an object may have");
            }
            return bytes;
        } catch (S3Exception e) {
            if (e.statusCode() == 416) {
                return new byte[0]; // an empty object
            }
            throw failed("read", key, e);
        } catch (SdkException e) {
            throw failed("read", key, e);
        }
    }

    @Override
    public ByteBuffer read(String key, long offsetBytes, int lengthBytes) throws RepositoryException {
        if (lengthBytes == 0) {
            return ByteBuffer.allocate(0);
        }
        try {
            count("GET", 1);
            ResponseBytes<GetObjectResponse> r = s3.getObjectAsBytes(g -> g.bucket(where.bucket()).key(objectKey(key))
                    .range("bytes=" + offsetBytes + "-" + (offsetBytes + lengthBytes - 1)));
            byte[] bytes = r.asByteArray();
            count("GET_BYTES", bytes.length);
            return ByteBuffer.wrap(bytes, 0, Math.min(bytes.length, lengthBytes)).slice();
        } catch (S3Exception e) {
            if (e.statusCode() == 416) {
                return ByteBuffer.allocate(0); // the range starts past the end: the object ends first
            }
            throw failed("read " + lengthBytes + " bytes at offset " + offsetBytes + " of", key, e);
        } catch (SdkException e) {
            throw failed("read " + lengthBytes + " bytes at offset " + offsetBytes + " of", key, e);
        }
    }

    @Override
    public long sizeBytes(String key) throws RepositoryException {
        return head(key).contentLength();
    }

    /** @throws RepositoryException NOT_FOUND if there is no such object, IO otherwise */
    private HeadObjectResponse head(String key) throws RepositoryException {
        try {
            count("HEAD", 1);
            return s3.headObject(h -> h.bucket(where.bucket()).key(objectKey(key)));
        } catch (SdkException e) {
            throw failed("stat", key, e);
        }
    }

    @Override
    public void put(String key, byte[] content) throws RepositoryException {
        try {
            count("PUT", 1);
            count("PUT_BYTES", content.length);
            s3.putObject(p -> p.bucket(where.bucket()).key(objectKey(key)).contentLength((long) content.length),
                    RequestBody.fromBytes(content));
        } catch (SdkException e) {
            throw failed("write", key, e);
        }
    }

    /**
     * Checks for the key, then PUTs. Not atomic against another writer of the same key between the
     * two requests; the keys written this way carry 24 random bits per second of their name, so two
     * hosts would have to draw the same in the same second (the server's conditional PUT,
     * If-None-Match, is not offered by every S3-compatible server).
     */
    @Override
    public boolean putIfAbsent(String key, byte[] content) throws RepositoryException {
        try {
            sizeBytes(key);
            return false;
        } catch (RepositoryException e) {
            if (e.code() != RepositoryException.Code.NOT_FOUND) {
                throw e;
            }
        }
        put(key, content);
        return true;
    }

    @Override
    public Upload create(String key, String writerTag) {
        return new PartUpload(key);
    }

    /** A pack being written: one PUT when it stays within one part, else a multipart upload. */
    private final class PartUpload implements Upload {
        private final String key;
        private final List<CompletableFuture<CompletedPart>> parts = new ArrayList<>();
        private ByteBuffer buffer;
        private String uploadId;
        private long positionBytes;

        PartUpload(String key) {
            this.key = key;
        }

        @Override
        public void write(ByteBuffer buf) throws RepositoryException {
            while (buf.hasRemaining()) {
                if (buffer == null) {
                    buffer = ByteBuffer.allocate(partBytes);
                }
                int n = Math.min(buffer.remaining(), buf.remaining());
                buffer.put(buf.slice(buf.position(), n));
                buf.position(buf.position() + n);
                positionBytes += n;
                if (!buffer.hasRemaining()) {
                    sendPart();
                }
            }
        }

        private void sendPart() throws RepositoryException {
            if (uploadId == null) {
                try {
                    count("MULTIPART", 1);
                    uploadId = s3.createMultipartUpload(c -> c.bucket(where.bucket()).key(objectKey(key))).uploadId();
                } catch (SdkException e) {
                    throw failed("start a multipart upload of", key, e);
                }
            }
            failIfAPartFailed();
            byte[] part = java.util.Arrays.copyOf(buffer.array(), buffer.position());
            buffer = null;
            int number = parts.size() + 1;
            partSlots.acquireUninterruptibly();
            CompletableFuture<CompletedPart> f = new CompletableFuture<>();
            parts.add(f);
            String id = uploadId;
            senders.execute(() -> {
                try {
                    count("MULTIPART", 1);
                    count("PUT_BYTES", part.length);
                    String etag = s3.uploadPart(u -> u.bucket(where.bucket()).key(objectKey(key)).uploadId(id)
                            .partNumber(number).contentLength((long) part.length), RequestBody.fromBytes(part)).eTag();
                    f.complete(CompletedPart.builder().partNumber(number).eTag(etag).build());
                } catch (SdkException e) {
                    f.completeExceptionally(failed("upload part " + number + " (" + part.length + " bytes) of", key, e));
                } catch (RuntimeException e) {
                    f.completeExceptionally(e);
                } finally {
                    partSlots.release();
                }
            });
        }

        private void failIfAPartFailed() throws RepositoryException {
            for (CompletableFuture<CompletedPart> f : parts) {
                if (f.isCompletedExceptionally()) {
                    await(f);
                }
            }
        }

        private CompletedPart await(CompletableFuture<CompletedPart> f) throws RepositoryException {
            try {
                return f.get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new RepositoryException(RepositoryException.Code.IO, "interrupted while uploading " + describe(key), e);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof RepositoryException r) {
                    throw r;
                }
                throw new RepositoryException(RepositoryException.Code.IO, "cannot upload " + describe(key) + ": "
                        + e.getCause(), e.getCause());
            }
        }

        @Override
        public long positionBytes() {
            return positionBytes;
        }

        @Override
        public void complete() throws RepositoryException {
            if (uploadId == null) {
                byte[] whole = buffer == null ? new byte[0] : java.util.Arrays.copyOf(buffer.array(), buffer.position());
                buffer = null;
                put(key, whole);
                return;
            }
            if (buffer != null && buffer.position() > 0) {
                sendPart();
            }
            List<CompletedPart> done = new ArrayList<>();
            for (CompletableFuture<CompletedPart> f : parts) {
                done.add(await(f));
            }
            try {
                count("MULTIPART", 1);
                s3.completeMultipartUpload(c -> c.bucket(where.bucket()).key(objectKey(key)).uploadId(uploadId)
                        .multipartUpload(CompletedMultipartUpload.builder().parts(done).build()));
            } catch (SdkException e) {
                throw failed("complete the multipart upload of", key, e);
            }
        }

        @Override
        public void abort() {
            buffer = null;
            if (uploadId != null) {
                for (CompletableFuture<CompletedPart> f : parts) {
                    f.handle((x, t) -> null).join();
                }
                try {
                    s3.abortMultipartUpload(a -> a.bucket(where.bucket()).key(objectKey(key)).uploadId(uploadId));
                } catch (SdkException e) {
                    // the bucket's lifecycle rule or the next dropIncomplete removes the parts
                }
            }
        }
    }

    @Override
    public List<Entry> list(String prefix) throws RepositoryException {
        List<Entry> entries = new ArrayList<>();
        try {
            ListObjectsV2Request req = ListObjectsV2Request.builder().bucket(where.bucket()).prefix(objectKey(prefix)).build();
            var pages = s3.listObjectsV2Paginator(req);
            for (var page : pages) {
                count("LIST", 1);
                for (S3Object o : page.contents()) {
                    String key = o.key().substring(keyPrefix.length());
                    if (o.lastModified() != null && o.size() != null) {
                        entries.add(new Entry(key, o.size(), o.lastModified()));
                    } else {
                        Entry e = stat(key);
                        if (e != null) {
                            entries.add(e);
                        }
                    }
                }
            }
        } catch (SdkException e) {
            throw failed("list", prefix, e);
        }
        return entries;
    }

    /**
     * An entry a listing gave without its time or size (an S3-compatible server may; a CI run's gc
     * against s3proxy met a writer session with a null time, which only that gives). Asks the object
     * itself; null if it is gone meanwhile.
     *
     * @throws RepositoryException IO if the store cannot say when the object was written
     */
    private Entry stat(String key) throws RepositoryException {
        HeadObjectResponse h;
        try {
            h = head(key);
        } catch (RepositoryException e) {
            if (e.code() == RepositoryException.Code.NOT_FOUND) {
                return null;
            }
            throw e;
        }
        if (h.lastModified() == null || h.contentLength() == null) {
            throw new RepositoryException(RepositoryException.Code.IO, "the store gives no time or size for "
                    + describe(key) + (where.endpoint() != null ? " at " + where.endpoint() : ""));
        }
        return new Entry(key, h.contentLength(), h.lastModified());
    }

    @Override
    public void delete(String key) throws RepositoryException {
        try {
            count("DELETE", 1);
            s3.deleteObject(d -> d.bucket(where.bucket()).key(objectKey(key)));
        } catch (SdkException e) {
            throw failed("delete", key, e);
        }
    }

    /** Aborts the multipart uploads under the prefix begun before {@code before} (uploads carry no writer tag here). */
    @Override
    public int dropIncomplete(String writerTag, Instant before) throws RepositoryException {
        if (before == null) {
            return 0;
        }
        int dropped = 0;
        try {
            for (MultipartUpload u : s3.listMultipartUploadsPaginator(l -> l.bucket(where.bucket()).prefix(keyPrefix)).uploads()) {
                if (u.initiated() != null && u.initiated().isBefore(before)) {
                    s3.abortMultipartUpload(a -> a.bucket(where.bucket()).key(u.key()).uploadId(u.uploadId()));
                    dropped++;
                }
            }
        } catch (SdkException e) {
            throw failed("list the incomplete uploads under", "", e);
        }
        return dropped;
    }

    @Override
    public void close() {
        senders.close();
        s3.close();
    }
}
