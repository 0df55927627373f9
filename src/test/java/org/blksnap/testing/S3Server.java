package org.blksnap.testing;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.ListObjectsV2Request;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * A real S3 server for tests: s3proxy (its self-contained jar, copied to {@code target/s3proxy}
 * by the build) run as a process with the filesystem backend in a temporary directory, on a free
 * port of 127.0.0.1, with fixed credentials; or, when {@code BLKSNAP_TEST_S3_ENDPOINT} is set, that
 * server instead (MinIO, Ceph RGW, AWS: credentials from {@code BLKSNAP_TEST_S3_ACCESS_KEY} and
 * {@code BLKSNAP_TEST_S3_SECRET_KEY}, region {@code BLKSNAP_TEST_S3_REGION} or us-east-1, bucket
 * {@code BLKSNAP_TEST_S3_BUCKET} or a new one). Each test gets its own bucket or prefix
 * ({@link #newRepo}). The credentials are handed to the code under test as the AWS SDK's system
 * properties ({@code aws.accessKeyId}, ...), which its default chain reads, and to child processes
 * by {@link #jvmArgs}. {@link #stop} and {@link #start} stop and restart a local server (the fault
 * test). Close it in a finally: it stops the process and removes its files.
 */
public final class S3Server implements AutoCloseable {
    public static final String ENDPOINT_ENV = "BLKSNAP_TEST_S3_ENDPOINT";
    private static final String LOCAL_KEY = "blksnap-test";
    private static final String LOCAL_SECRET = "blksnap-test-secret";

    private final URI endpoint;
    private final String accessKey;
    private final String secretKey;
    private final String region;
    private final Path baseDir;
    private final int port;
    private final String fixedBucket;
    private final List<String> bucketsMade = new ArrayList<>();
    private Process process;
    private final S3Client admin;

    private S3Server(URI endpoint, String accessKey, String secretKey, String region, Path baseDir, int port,
                     String fixedBucket) {
        this.endpoint = endpoint;
        this.accessKey = accessKey;
        this.secretKey = secretKey;
        this.region = region;
        this.baseDir = baseDir;
        this.port = port;
        this.fixedBucket = fixedBucket;
        this.admin = S3Client.builder().httpClient(UrlConnectionHttpClient.create()).endpointOverride(endpoint)
                .forcePathStyle(true).region(Region.of(region))
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(accessKey, secretKey)))
                .build();
    }

    /** Whether the tests run against an external endpoint rather than a local s3proxy. */
    public static boolean external() {
        String e = System.getenv(ENDPOINT_ENV);
        return e != null && !e.isBlank();
    }

    /** Starts a local s3proxy in {@code dir} (or uses the external endpoint) and sets the SDK's system properties. */
    public static S3Server start(Path dir) throws Exception {
        S3Server s;
        if (external()) {
            s = new S3Server(URI.create(System.getenv(ENDPOINT_ENV)), env("BLKSNAP_TEST_S3_ACCESS_KEY", null),
                    env("BLKSNAP_TEST_S3_SECRET_KEY", null), env("BLKSNAP_TEST_S3_REGION", "us-east-1"), null, -1,
                    env("BLKSNAP_TEST_S3_BUCKET", null));
        } else {
            int port;
            try (ServerSocket ss = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
                port = ss.getLocalPort();
            }
            Path base = Files.createDirectories(dir.resolve("s3proxy-data"));
            s = new S3Server(URI.create("http://127.0.0.1:" + port), LOCAL_KEY, LOCAL_SECRET, "us-east-1", base, port, null);
            try {
                s.start();
            } catch (Exception e) {
                s.close();
                throw e;
            }
        }
        System.setProperty("aws.accessKeyId", s.accessKey);
        System.setProperty("aws.secretAccessKey", s.secretKey);
        System.setProperty("aws.region", s.region);
        return s;
    }

    private static String env(String name, String fallback) {
        String v = System.getenv(name);
        if (v == null || v.isBlank()) {
            if (fallback == null) {
                throw new IllegalStateException(ENDPOINT_ENV + " is set: " + name + " must be set too");
            }
            return fallback;
        }
        return v;
    }

    /** The s3proxy jar the build copies (see pom.xml, copy-s3proxy). */
    static Path jar() {
        Path jar = Path.of("target", "s3proxy", "s3proxy.jar").toAbsolutePath();
        if (!Files.isRegularFile(jar)) {
            throw new IllegalStateException(jar + " is missing: run the tests through Maven (bin/test), whose "
                    + "generate-test-resources phase copies it");
        }
        return jar;
    }

    /** (Re)starts the local server on its port and data directory; returns once it answers. */
    public void start() throws Exception {
        if (baseDir == null) {
            throw new IllegalStateException("an external endpoint cannot be started");
        }
        Path conf = baseDir.resolveSibling("s3proxy.conf");
        Files.writeString(conf, String.join("\n",
                "s3proxy.endpoint=http://127.0.0.1:" + port,
                "s3proxy.authorization=aws-v2-or-v4",
                "s3proxy.identity=" + LOCAL_KEY,
                "s3proxy.credential=" + LOCAL_SECRET,
                "jclouds.provider=filesystem",
                "jclouds.filesystem.basedir=" + baseDir,
                ""));
        Path log = baseDir.resolveSibling("s3proxy.log");
        process = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx256m", "-jar", jar().toString(), "--properties", conf.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (true) {
            if (!process.isAlive()) {
                throw new IllegalStateException("s3proxy exited with " + process.exitValue() + ":\n" + Files.readString(log));
            }
            try (Socket sock = new Socket()) {
                sock.connect(new InetSocketAddress("127.0.0.1", port), 200);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("s3proxy did not listen on " + port + " within 60 s:\n" + Files.readString(log));
                }
                Thread.sleep(100);
            }
        }
    }

    /** Stops the local server at once (SIGKILL: as a crash or a network cut looks to a client). */
    public void stop() throws InterruptedException {
        if (process != null) {
            process.destroyForcibly();
            process.waitFor();
            process = null;
        }
    }

    public URI endpoint() {
        return endpoint;
    }

    /**
     * A fresh repository location {@code s3://BUCKET/PREFIX}: a new bucket (local server), or a new
     * prefix in {@code BLKSNAP_TEST_S3_BUCKET}.
     */
    public String newRepo(String name) {
        String unique = UUID.randomUUID().toString().substring(0, 8);
        if (fixedBucket != null) {
            return "s3://" + fixedBucket + "/blksnap-test-" + unique + "/" + name;
        }
        String bucket = "blksnap-" + unique;
        admin.createBucket(b -> b.bucket(bucket));
        bucketsMade.add(bucket);
        return "s3://" + bucket + "/" + name;
    }

    /** Keys under {@code s3://bucket/prefix} (relative to it) whose key starts with {@code under}. */
    public List<S3Object> list(String repo, String under) {
        String rest = repo.substring("s3://".length());
        String bucket = rest.substring(0, rest.indexOf('/'));
        String prefix = rest.substring(rest.indexOf('/') + 1) + "/" + under;
        List<S3Object> out = new ArrayList<>();
        admin.listObjectsV2Paginator(ListObjectsV2Request.builder().bucket(bucket).prefix(prefix).build()).contents()
                .forEach(out::add);
        return out;
    }

    /** JVM options that give a child process the same credentials. */
    public List<String> jvmArgs() {
        return List.of("-Daws.accessKeyId=" + accessKey, "-Daws.secretAccessKey=" + secretKey, "-Daws.region=" + region);
    }

    @Override
    public void close() throws Exception {
        try {
            // a local server's buckets go with its temporary directory; an external server's are emptied
            for (String bucket : baseDir == null ? bucketsMade : List.<String>of()) {
                try {
                    for (S3Object o : admin.listObjectsV2Paginator(b -> b.bucket(bucket)).contents()) {
                        admin.deleteObject(d -> d.bucket(bucket).key(o.key()));
                    }
                    admin.deleteBucket(d -> d.bucket(bucket));
                } catch (RuntimeException e) {
                    // the server may be stopped; its files go with the temporary directory
                }
            }
        } finally {
            admin.close();
            stop();
        }
    }
}
