package org.blksnap.training;

import org.blksnap.cli.Training;

/**
 * The training run of the tool's class-data archive, as {@code bin/blksnap} starts it with
 * {@code -XX:ArchiveClassesAtExit}: the commands against a stand-in daemon ({@link Training}), then a
 * real backup, incremental, verify and restore against an in-process daemon ({@link BackupTraining}).
 * Prints nothing of its own; exits 0, or 1 if a command call did not behave (the launcher then keeps no
 * archive); the backup part only adds to the archive, so its failure does not count.
 */
public final class Train {
    private Train() {
    }

    public static void main(String[] args) throws Exception {
        int failures = Training.run();
        try {
            BackupTraining.run(); // whatever it reached is archived; an archive without it is still right
        } catch (Exception | Error e) {
            // (a temporary directory that cannot hold a daemon, say): the command archive is what matters
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
