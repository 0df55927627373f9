package org.blksnap;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.lang.classfile.ClassFile;
import java.lang.classfile.constantpool.ClassEntry;
import java.lang.classfile.constantpool.PoolEntry;
import java.lang.classfile.constantpool.Utf8Entry;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.blksnap.cli.Main;
import org.blksnap.ctrl.FakeBlksnap;
import org.blksnap.ctrl.api.WireJson;
import org.junit.jupiter.api.Test;

/**
 * Which package may use which, read from the compiled classes (every class, descriptor and
 * annotation a class names is in its constant pool): the wire contract stands alone, the tool knows
 * only the wire contract, the engine's test double knows only the engine's API.
 */
class LayeringTest {
    /** Project classes (internal names) that the classes of {@code packageName} refer to, by class. */
    private static Map<String, Set<String>> projectReferences(Class<?> anchor, String packageName)
            throws IOException, URISyntaxException {
        Path root = Path.of(anchor.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path dir = root.resolve(packageName.replace('.', '/'));
        Map<String, Set<String>> out = new TreeMap<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".class")).toList()) {
                Set<String> refs = new TreeSet<>();
                for (PoolEntry e : ClassFile.of().parse(Files.readAllBytes(f)).constantPool()) {
                    String text = e instanceof ClassEntry c ? c.asInternalName() : e instanceof Utf8Entry u ? u.stringValue() : "";
                    int at = text.indexOf("org/blksnap/");
                    while (at >= 0) {
                        int end = at;
                        while (end < text.length() && (Character.isJavaIdentifierPart(text.charAt(end)) || text.charAt(end) == '/')) {
                            end++;
                        }
                        refs.add(text.substring(at, end));
                        at = text.indexOf("org/blksnap/", end);
                    }
                }
                out.put(root.relativize(f).toString(), refs);
            }
        }
        return out;
    }

    private static void assertOnlyUses(Map<String, Set<String>> refs, List<String> allowedPrefixes) {
        refs.forEach((cls, used) -> assertThat(used).as(cls)
                .allSatisfy(r -> assertThat(allowedPrefixes).as(cls + " uses " + r).anyMatch(r::startsWith)));
    }

    @Test
    void theWireContractUsesNothingElseOfTheProject() throws Exception {
        Map<String, Set<String>> refs = projectReferences(WireJson.class, "org.blksnap.ctrl.api");
        assertThat(refs).isNotEmpty();
        refs.forEach((cls, used) -> assertThat(used).as(cls).allSatisfy(r -> assertThat(r).matches("org/blksnap/ctrl/api/[^/]+")));
    }

    @Test
    void theToolUsesOnlyTheWireContract() throws Exception {
        assertOnlyUses(projectReferences(Main.class, "org.blksnap.cli"), List.of("org/blksnap/cli/", "org/blksnap/ctrl/api/"));
    }

    @Test
    void theEnginesTestDoubleUsesOnlyTheEnginesApi() throws Exception {
        Map<String, Set<String>> refs = projectReferences(FakeBlksnap.class, "org.blksnap.ctrl");
        refs.keySet().removeIf(cls -> !cls.contains("FakeBlksnap"));
        assertThat(refs).isNotEmpty();
        refs.forEach((cls, used) -> assertThat(used).as(cls).allSatisfy(r -> assertThat(r)
                .matches("org/blksnap/engine/[^/]+|org/blksnap/ctrl/FakeBlksnap.*")));
    }
}
