package org.blksnap.engine.module;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.util.FirstFailure;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Brings named steps up in order and down in reverse. If a step fails on the way up, the steps
 * already up are taken down (the module's init did not do this in v1) and the failure is thrown.
 * Taking down keeps the first failure and adds later ones as suppressed.
 *
 * <p>Not thread-safe; the engine calls it under its control lock.
 */
final class Lifecycle {
    private static final Logger LOG = LoggerFactory.getLogger(Lifecycle.class);

    /** A subsystem's start and stop. */
    interface Action {
        void run() throws Exception;
    }

    record Step(String name, Action up, Action down) {
    }

    private final Deque<Step> up = new ArrayDeque<>();

    /** Brings every step up, or none. */
    void bringUp(List<Step> steps) {
        for (Step s : steps) {
            try {
                s.up().run();
                up.push(s);
                LOG.debug("{} up", s.name());
            } catch (Exception e) {
                BlksnapException failure = e instanceof BlksnapException be ? be
                        : new BlksnapException(Errno.EFAULT, "init step " + s.name() + " failed: " + e.getMessage(), e);
                RuntimeException rest = tearDown();
                if (rest != null) {
                    failure.addSuppressed(rest);
                }
                throw failure;
            }
        }
    }

    /** Names of the steps up, first first. */
    List<String> stepsUp() {
        return up.reversed().stream().map(Step::name).toList();
    }

    /** Takes every step down in reverse order; returns the first failure (others suppressed) or null. */
    RuntimeException tearDown() {
        FirstFailure failures = new FirstFailure();
        while (!up.isEmpty()) {
            Step s = up.pop();
            try {
                s.down().run();
                LOG.debug("{} down", s.name());
            } catch (RuntimeException e) {
                failures.add(e);
            } catch (Exception e) {
                failures.add(new BlksnapException(Errno.EIO, "exit step " + s.name() + " failed: " + e.getMessage(), e));
            }
        }
        return (RuntimeException) failures.first();
    }
}
