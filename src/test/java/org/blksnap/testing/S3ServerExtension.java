package org.blksnap.testing;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.blksnap.util.FileTrees;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * One {@link S3Server} for a test class: started before its first test in a temporary directory of
 * its own, stopped and its directory removed after its last, also when tests fail. Register it as
 * {@code @RegisterExtension static final S3ServerExtension s3 = new S3ServerExtension();}; the
 * server's calls are delegated, so {@code s3.newRepo(..)} reads as before. Not thread-safe beyond
 * what {@link S3Server} is.
 */
public final class S3ServerExtension implements BeforeAllCallback, AfterAllCallback {
    private Path dir;
    private S3Server server;

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        dir = Files.createTempDirectory("blksnap-s3-");
        server = S3Server.start(dir);
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        try {
            if (server != null) {
                server.close();
            }
        } finally {
            server = null;
            if (dir != null) {
                try {
                    FileTrees.deleteRecursively(dir);
                } catch (IOException e) {
                    // a leftover temporary directory must not fail the class
                }
            }
        }
    }

    /** The running server. */
    public S3Server server() {
        if (server == null) {
            throw new IllegalStateException("the S3 server runs only while its test class does");
        }
        return server;
    }

    /** {@link S3Server#endpoint()}. */
    public URI endpoint() {
        return server().endpoint();
    }

    /** {@link S3Server#newRepo(String)}. */
    public String newRepo(String name) {
        return server().newRepo(name);
    }

    /** {@link S3Server#list(String, String)}. */
    public List<S3Object> list(String repo, String under) {
        return server().list(repo, under);
    }
}
