package org.blksnap.e2e;

import java.io.File;
import org.junit.jupiter.api.Assumptions;

/** External tools: a test needing one fails on CI (the CI variable is set) and is skipped elsewhere. */
public final class Tools {
    private Tools() {
    }

    public static boolean available(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(File.pathSeparator)) {
            if (new File(dir, tool).canExecute()) {
                return true;
            }
        }
        return new File("/usr/sbin/" + tool).canExecute() || new File("/sbin/" + tool).canExecute();
    }

    /** Skips (or fails on CI) unless every tool is on the PATH. */
    public static void require(String... tools) {
        for (String t : tools) {
            if (!available(t)) {
                String msg = "external tool '" + t + "' is not installed";
                if (System.getenv("CI") != null) {
                    throw new AssertionError(msg + " (CI is set, so this is a failure)");
                }
                Assumptions.abort(msg);
            }
        }
    }
}
