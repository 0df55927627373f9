package org.blksnap.backup;

import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * One writer's presence in a repository, in place of a lock: {@code sessions/<id>.start} written
 * once when the writer begins (the store's time of it is the session's start) and
 * {@code sessions/<id>.beat} rewritten every {@link #HEARTBEAT} by a background thread (and when the
 * writer records the snapshot it holds). gc treats a session whose newest marker is older than
 * {@link #STALE} as dead; a writer whose last beat is older than half of that refuses to commit a
 * point (it may have been paused past gc's patience). Both markers go when the writer closes.
 *
 * <p>Thread-safe: {@link #record} and {@link #checkAlive} from any thread.
 */
final class WriterSession implements AutoCloseable {
    static final Duration HEARTBEAT = Duration.ofSeconds(60);
    static final Duration STALE = Duration.ofMinutes(10);
    private static final SecureRandom RANDOM = new SecureRandom();

    private final ObjectStore objects;
    private final String id;
    private final String host;
    private final Consumer<String> warn;
    private final Object beatLock = new Object();
    // guarded by beatLock
    private Map<String, String> entries = Map.of();
    private volatile long lastBeatNanos;
    private volatile boolean closed;
    private final Thread heart;

    /** What another writer's markers say. */
    record Marker(String id, String host, long pid, Instant start, Instant lastSeen, Map<String, String> entries) {
        boolean aliveAt(Instant now) {
            return lastSeen.isAfter(now.minus(STALE));
        }
    }

    private WriterSession(ObjectStore objects, String id, String host, Consumer<String> warn) {
        this.objects = objects;
        this.id = id;
        this.host = host;
        this.warn = warn;
        this.heart = Thread.ofVirtual().name("repository-heartbeat-" + id).unstarted(this::beatLoop);
    }

    /** Writes the start marker and starts the heartbeat. */
    static WriterSession begin(ObjectStore objects, String host, Consumer<String> warn) throws RepositoryException {
        byte[] raw = new byte[8];
        RANDOM.nextBytes(raw);
        WriterSession s = new WriterSession(objects, HexFormat.of().formatHex(raw), host, warn);
        objects.put(s.key(RepositoryLayout.START_SUFFIX), s.content(Map.of()));
        s.beat();
        s.heart.start();
        return s;
    }

    String id() {
        return id;
    }

    String host() {
        return host;
    }

    private String key(String suffix) {
        return RepositoryLayout.SESSIONS + "/" + id + suffix;
    }

    private byte[] content(Map<String, String> extra) {
        StringBuilder sb = new StringBuilder("host " + host + "\npid " + ProcessHandle.current().pid() + "\n");
        extra.forEach((k, v) -> sb.append(k).append(' ').append(v).append('\n'));
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    private void beat() throws RepositoryException {
        synchronized (beatLock) {
            objects.put(key(RepositoryLayout.BEAT_SUFFIX), content(entries));
        }
        lastBeatNanos = System.nanoTime();
    }

    private void beatLoop() {
        while (!closed) {
            try {
                Thread.sleep(HEARTBEAT);
            } catch (InterruptedException e) {
                return;
            }
            if (closed) {
                return;
            }
            try {
                beat();
            } catch (RepositoryException e) {
                warn.accept("repository session " + id + ": heartbeat failed (retrying in " + HEARTBEAT.toSeconds()
                        + " s): " + e.getMessage());
            }
        }
    }

    /** Records {@code extra} (the snapshot and storage a backup holds) in the beat marker, at once. */
    void record(Map<String, String> extra) throws RepositoryException {
        synchronized (beatLock) {
            entries = Map.copyOf(extra);
        }
        beat();
    }

    /**
     * Refuses to commit when the heartbeat has not reached the store for half of {@link #STALE}:
     * a gc may count this writer dead and remove packs it has just referenced.
     */
    void checkAlive() throws RepositoryException {
        long ageNanos = System.nanoTime() - lastBeatNanos;
        if (ageNanos > STALE.toNanos() / 2) {
            throw new RepositoryException(RepositoryException.Code.IO, "the writer session " + id + " could not renew "
                    + objects.describe(key(RepositoryLayout.BEAT_SUFFIX)) + " for " + (ageNanos / 1_000_000_000L)
                    + " s: a gc may have counted it dead; the point is not committed, run the backup again");
        }
    }

    /** Every session's markers in the store (a session whose markers do not read is left out). */
    static List<Marker> list(ObjectStore objects) throws RepositoryException {
        Map<String, Instant[]> times = new LinkedHashMap<>();
        for (ObjectStore.Entry e : objects.list(RepositoryLayout.SESSIONS + "/")) {
            String name = e.key().substring(e.key().lastIndexOf('/') + 1);
            int dot = name.lastIndexOf('.');
            if (dot <= 0) {
                continue;
            }
            Instant[] t = times.computeIfAbsent(name.substring(0, dot), k -> new Instant[2]);
            if (name.endsWith(RepositoryLayout.START_SUFFIX)) {
                t[0] = e.lastModified();
            } else if (name.endsWith(RepositoryLayout.BEAT_SUFFIX)) {
                t[1] = e.lastModified();
            }
        }
        List<Marker> markers = new ArrayList<>();
        for (Map.Entry<String, Instant[]> e : times.entrySet()) {
            Instant start = e.getValue()[0];
            Instant beat = e.getValue()[1];
            Instant lastSeen = beat == null ? start : start == null || beat.isAfter(start) ? beat : start;
            Map<String, String> kv = Map.of();
            try {
                kv = parse(objects.get(RepositoryLayout.SESSIONS + "/" + e.getKey()
                        + (beat != null ? RepositoryLayout.BEAT_SUFFIX : RepositoryLayout.START_SUFFIX), RepositoryLayout.MAX_CONFIG_BYTES));
            } catch (RepositoryException x) {
                if (x.code() == RepositoryException.Code.IO) {
                    throw x;
                }
                if (x.code() == RepositoryException.Code.NOT_FOUND && start == null) {
                    continue; // ended meanwhile
                }
            }
            long pid = -1;
            try {
                pid = Long.parseLong(kv.getOrDefault("pid", "-1"));
            } catch (NumberFormatException x) {
                // unknown
            }
            Map<String, String> extra = new LinkedHashMap<>(kv);
            extra.remove("host");
            extra.remove("pid");
            // a session without a start marker began no later than its first beat
            markers.add(new Marker(e.getKey(), kv.getOrDefault("host", ""), pid, start != null ? start : lastSeen,
                    lastSeen, extra));
        }
        return markers;
    }

    static Map<String, String> parse(byte[] bytes) {
        Map<String, String> kv = new LinkedHashMap<>();
        for (String line : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
            int sp = line.indexOf(' ');
            if (sp > 0) {
                kv.put(line.substring(0, sp), line.substring(sp + 1));
            }
        }
        return kv;
    }

    /**
     * The sessions of {@code host} whose process is gone (a writer killed on this host): their
     * records, so the caller can destroy the snapshots they held. Their markers and unfinished
     * uploads are removed.
     */
    static List<Map<String, String>> reapDead(ObjectStore objects, String host, String selfId) throws RepositoryException {
        List<Map<String, String>> dead = new ArrayList<>();
        for (Marker m : list(objects)) {
            if (m.id().equals(selfId) || !m.host().equals(host) || m.pid() <= 0) {
                continue;
            }
            Optional<ProcessHandle> p = ProcessHandle.of(m.pid());
            if (p.isPresent() && p.get().isAlive()) {
                continue;
            }
            dead.add(m.entries());
            objects.dropIncomplete(m.id(), null);
            objects.delete(RepositoryLayout.SESSIONS + "/" + m.id() + RepositoryLayout.BEAT_SUFFIX);
            objects.delete(RepositoryLayout.SESSIONS + "/" + m.id() + RepositoryLayout.START_SUFFIX);
        }
        return dead;
    }

    /** Stops the heartbeat and removes both markers (the beat first: a start alone still blocks gc as it should). */
    @Override
    public void close() {
        closed = true;
        heart.interrupt();
        try {
            heart.join(Duration.ofSeconds(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            objects.delete(key(RepositoryLayout.BEAT_SUFFIX));
            objects.delete(key(RepositoryLayout.START_SUFFIX));
        } catch (RepositoryException e) {
            warn.accept("repository session " + id + ": cannot remove its markers (gc counts it dead after "
                    + STALE.toMinutes() + " minutes): " + e.getMessage());
        }
    }
}
