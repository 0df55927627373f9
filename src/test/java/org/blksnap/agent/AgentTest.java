package org.blksnap.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.blksnap.ctrl.AccessPolicy;
import org.blksnap.ctrl.api.Replies;
import org.blksnap.ctrl.api.Requests;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The agent's rules and a job's life, without a daemon (a job whose control socket is absent fails fast). */
class AgentTest {
    @TempDir
    Path dir;

    private static AccessPolicy.Caller caller(boolean privileged) throws Exception {
        UserPrincipalLookupService l = FileSystems.getDefault().getUserPrincipalLookupService();
        return new AccessPolicy.Caller(l.lookupPrincipalByName("root"), l.lookupPrincipalByGroupName("root"), privileged);
    }

    private static Errno errno(Runnable r) {
        try {
            r.run();
        } catch (BlksnapException e) {
            return e.errno();
        }
        throw new AssertionError("no error");
    }

    @Test
    void refusesWhatItDoesNotRun() throws Exception {
        try (Agent agent = new Agent(dir.resolve("control.sock"), names -> 0, null)) {
            AccessPolicy.Caller root = caller(true);
            AccessPolicy.Caller other = caller(false);
            assertThatThrownBy(() -> agent.start(other, new Requests.AgentStart(List.of("backup", "--repo", "/r"),
                    null, null, null))).isInstanceOf(BlksnapException.class).hasMessageContaining("only root or");
            assertThat(errno(() -> agent.start(other, new Requests.AgentStart(List.of("backup"), null, null, null))))
                    .isEqualTo(Errno.EPERM);
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of("version"), null, null, null))))
                    .isEqualTo(Errno.EINVAL);
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of(), null, null, null))))
                    .isEqualTo(Errno.EINVAL);
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of("backup", "--control", "/x"),
                    null, null, null)))).isEqualTo(Errno.EINVAL);
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of("backup", "--agent=daemon"),
                    null, null, null)))).isEqualTo(Errno.EINVAL);
            assertThatThrownBy(() -> agent.start(root, new Requests.AgentStart(List.of("backup", "--repo", "repo"),
                    null, null, null))).hasMessageContaining("--repo repo must be an absolute path");
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of("backup", "--storage-dir=rel"),
                    null, null, null)))).isEqualTo(Errno.EINVAL);
            assertThat(errno(() -> agent.start(root, new Requests.AgentStart(List.of("backup", "--repo", "/r"),
                    null, null, 0L)))).isEqualTo(Errno.EINVAL);
            assertThat(errno(() -> agent.await(new Requests.AgentWait(UUID.randomUUID(), 0)))).isEqualTo(Errno.ESRCH);
            assertThat(errno(() -> agent.cancel(new Requests.AgentCancel(UUID.randomUUID())))).isEqualTo(Errno.ESRCH);
            assertThat(agent.jobCount()).isZero();
        }
    }

    @Test
    void refusesAJobWhoseDevicesNeedMoreHeapThanTheDaemonCanSpare() throws Exception {
        try (Agent agent = new Agent(dir.resolve("control.sock"), names -> names.size() * (1L << 50), null)) {
            assertThatThrownBy(() -> agent.start(caller(true), new Requests.AgentStart(List.of("backup", "--repo", "/r",
                    "--device", "huge", "--device=huge2"), null, null, null)))
                    .isInstanceOf(BlksnapException.class).hasMessageContaining("huge, huge2 needs about")
                    .matches(e -> ((BlksnapException) e).errno() == Errno.ENOMEM);
            assertThat(agent.jobCount()).isZero();
        }
    }

    @Test
    void aJobsOutputAndExitStatusReachItsCallerThenTheJobIsForgotten() throws Exception {
        try (Agent agent = new Agent(dir.resolve("no-daemon.sock"), names -> 0, null)) {
            UUID id = agent.start(caller(true), new Requests.AgentStart(List.of("backup", "--repo", dir.resolve("repo")
                    .toString(), "--device", "disk0", "--storage-dir", dir.toString()), null, null, null)).id();
            StringBuilder err = new StringBuilder();
            Integer status = null;
            for (int i = 0; i < 200 && status == null; i++) {
                Replies.AgentOutput o = agent.await(new Requests.AgentWait(id, 100));
                if (o.stderr() != null) {
                    err.append(o.stderr());
                }
                status = o.exitStatus();
            }
            assertThat(status).as(err.toString()).isEqualTo(111);
            assertThat(err.toString()).contains("no-daemon.sock");
            assertThat(agent.jobCount()).as("collected with its exit status").isZero();
            assertThat(errno(() -> agent.await(new Requests.AgentWait(id, 0)))).isEqualTo(Errno.ESRCH);
        }
    }

    @Test
    void anEndedJobNobodyCollectsIsForgottenAfterItsLease() throws Exception {
        try (Agent agent = new Agent(dir.resolve("no-daemon.sock"), names -> 0, null)) {
            agent.start(caller(true), new Requests.AgentStart(List.of("backup", "--repo", "/nonexistent", "--device", "d"),
                    null, null, 1L));
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (agent.jobCount() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            assertThat(agent.jobCount()).isZero();
        }
    }

    /** Writers of many threads and a taker at once: every line arrives whole and once, multi-byte characters intact. */
    @Test
    void outputWrittenByManyThreadsIsTakenWholeAndOnce() throws Exception {
        ReentrantLock lock = new ReentrantLock();
        Condition changed = lock.newCondition();
        JobOutput out = new JobOutput(lock, changed);
        int writers = 4;
        int lines = 2000;
        CountDownLatch go = new CountDownLatch(1);
        StringBuilder taken = new StringBuilder();
        try (ExecutorService pool = Executors.newFixedThreadPool(writers + 1)) {
            List<Future<?>> fs = new ArrayList<>();
            for (int w = 0; w < writers; w++) {
                int writer = w;
                fs.add(pool.submit(() -> {
                    go.await();
                    for (int i = 0; i < lines; i++) {
                        byte[] b = ("w" + writer + " l" + i + " é€😀\n").getBytes(StandardCharsets.UTF_8);
                        // split each line in two writes, cutting a multi-byte character: a reader must never see half
                        int cut = b.length - 3;
                        synchronized (out) { // one line's two halves stay together, as a PrintStream's println does
                            out.write(b, 0, cut);
                            out.write(b, cut, b.length - cut);
                        }
                    }
                    return null;
                }));
            }
            go.countDown();
            boolean writing = true;
            while (writing) {
                writing = fs.stream().anyMatch(f -> !f.isDone());
                lock.lock();
                try {
                    String s = out.take();
                    if (s != null) {
                        assertThat(s).doesNotContain("\uFFFD");
                        taken.append(s);
                    }
                } finally {
                    lock.unlock();
                }
            }
            for (Future<?> f : fs) {
                f.get();
            }
        }
        lock.lock();
        try {
            String s = out.take();
            if (s != null) {
                taken.append(s);
            }
            assertThat(out.isEmpty()).isTrue();
        } finally {
            lock.unlock();
        }
        String[] got = taken.toString().split("\n");
        assertThat(got).hasSize(writers * lines).doesNotHaveDuplicates();
        assertThat(got).allMatch(l -> l.matches("w[0-9] l[0-9]+ é€😀"));
    }

    @Test
    void outputBeyondTheLimitIsDroppedAndSaidSo() {
        ReentrantLock lock = new ReentrantLock();
        JobOutput out = new JobOutput(lock, lock.newCondition());
        byte[] big = new byte[JobOutput.MAX_KEPT_BYTES];
        java.util.Arrays.fill(big, (byte) 'x');
        out.write(big, 0, big.length);
        out.write(new byte[] {'y'}, 0, 1);
        lock.lock();
        try {
            String s = out.take();
            assertThat(s.length() - s.replace("x", "").length()).isEqualTo(JobOutput.MAX_KEPT_BYTES);
            assertThat(s.substring(JobOutput.MAX_KEPT_BYTES)).as("the drop is said, the dropped byte is not there")
                    .startsWith("\n[blksnap agent: output beyond").endsWith("was dropped]\n");
            assertThat(out.isEmpty()).isTrue();
        } finally {
            lock.unlock();
        }
    }
}
