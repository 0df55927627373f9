package org.blksnap.backup;

import java.net.URI;
import java.nio.file.Path;

/**
 * Where a repository is: a directory, or {@code s3://BUCKET/PREFIX} on S3 or an S3-compatible
 * server ({@code endpoint}: path-style addressing; null: AWS, virtual-hosted style, the region from
 * the SDK's default chain). Immutable.
 */
public sealed interface RepositoryLocation {
    /** The environment variable naming the S3 endpoint when {@code --s3-endpoint} is not given. */
    String ENDPOINT_ENV = "BLKSNAP_S3_ENDPOINT";

    /** A repository directory. */
    record Directory(Path dir) implements RepositoryLocation {
        @Override
        public String toString() {
            return dir.toString();
        }
    }

    /**
     * A repository in an S3 bucket, its objects under {@code prefix} (empty, or ending without a slash).
     *
     * @param endpoint an S3-compatible server's URL, or null for AWS
     */
    record S3(String bucket, String prefix, URI endpoint) implements RepositoryLocation {
        @Override
        public String toString() {
            return "s3://" + bucket + (prefix.isEmpty() ? "" : "/" + prefix);
        }
    }

    /**
     * Parses {@code --repo}: {@code s3://BUCKET[/PREFIX]} or a directory path.
     *
     * @param endpoint {@code --s3-endpoint}, or null to use {@value #ENDPOINT_ENV} when set
     * @throws IllegalArgumentException a malformed s3:// location or endpoint (the message names it)
     */
    static RepositoryLocation parse(String repo, String endpoint) {
        if (!repo.startsWith("s3://")) {
            if (endpoint != null) {
                throw new IllegalArgumentException("--s3-endpoint " + endpoint + " is given, but --repo " + repo
                        + " is not an s3:// location");
            }
            return new Directory(Path.of(repo).toAbsolutePath().normalize());
        }
        String rest = repo.substring("s3://".length());
        int slash = rest.indexOf('/');
        String bucket = slash < 0 ? rest : rest.substring(0, slash);
        String prefix = slash < 0 ? "" : rest.substring(slash + 1);
        while (prefix.endsWith("/")) {
            prefix = prefix.substring(0, prefix.length() - 1);
        }
        if (!bucket.matches("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")) {
            throw new IllegalArgumentException("--repo " + repo + ": bucket name '" + bucket
                    + "' must be 3-63 lower-case letters, digits, dots and hyphens");
        }
        if (prefix.contains("//") || prefix.startsWith("/")) {
            throw new IllegalArgumentException("--repo " + repo + ": the prefix '" + prefix + "' has an empty path segment");
        }
        String ep = endpoint != null ? endpoint : System.getenv(ENDPOINT_ENV);
        URI uri = null;
        if (ep != null && !ep.isBlank()) {
            try {
                uri = URI.create(ep.trim());
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--s3-endpoint " + ep + " is not a URL: " + e.getMessage());
            }
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme()) || uri.getHost() == null) {
                throw new IllegalArgumentException("--s3-endpoint " + ep + " must be an http:// or https:// URL with a host");
            }
        }
        return new S3(bucket, prefix, uri);
    }
}
