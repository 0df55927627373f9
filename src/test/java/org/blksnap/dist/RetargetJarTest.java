package org.blksnap.dist;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The build rewrites picocli's Java 5 class files as Java 8 ones (src/build/RetargetJar.java) so
 * that class-data sharing archives them: every class of the rewritten jar is a Java 8 class file
 * that the verifier accepts and that loads and initializes, and a second run changes nothing.
 */
class RetargetJarTest {
    private static Path picocliJar() throws Exception {
        return Path.of(CommandLine.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    }

    private static String retarget(Path jar, Path out) throws Exception {
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                Path.of("src/build/RetargetJar.java").toAbsolutePath().toString(), jar.toString(), out.toString())
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(log).isZero();
        return log;
    }

    /** Class file name and major version of every class outside META-INF. */
    private static List<String> classes(Path jar, List<Integer> majors) throws IOException {
        List<String> names = new ArrayList<>();
        try (ZipFile z = new ZipFile(jar.toFile())) {
            for (ZipEntry e : z.stream().toList()) {
                if (e.getName().endsWith(".class") && !e.getName().startsWith("META-INF/")) {
                    byte[] head = z.getInputStream(e).readNBytes(8);
                    majors.add(((head[6] & 0xff) << 8) | (head[7] & 0xff));
                    names.add(e.getName());
                }
            }
        }
        return names;
    }

    @Test
    void picocliBecomesJava8ClassFilesThatVerifyAndLoad(@TempDir Path dir) throws Exception {
        List<Integer> before = new ArrayList<>();
        List<String> names = classes(picocliJar(), before);
        assertThat(before).as("picocli as published: Java 5 class files").contains(49);

        Path out = dir.resolve("picocli.jar");
        assertThat(retarget(picocliJar(), out)).contains("rewritten as Java 8 class files");
        List<Integer> after = new ArrayList<>();
        assertThat(classes(out, after)).containsExactlyElementsOf(names);
        assertThat(after).allMatch(major -> major == 52);

        // initializing a class links it: the verifier (on for classes not from the JDK) checks each one
        try (URLClassLoader loader = new URLClassLoader(new URL[] {out.toUri().toURL()},
                ClassLoader.getPlatformClassLoader())) {
            for (String name : names) {
                Class<?> c = Class.forName(name.replace('/', '.').replaceAll("\\.class$", ""), true, loader);
                assertThat(c.getClassLoader()).isSameAs(loader);
            }
        }

        byte[] once = Files.readAllBytes(out);
        assertThat(retarget(out, out)).contains("nothing to do");
        assertThat(Files.readAllBytes(out)).isEqualTo(once);
    }
}
