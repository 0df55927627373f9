package org.blksnap.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.channels.FileChannel;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipal;
import java.util.ArrayList;
import java.util.List;
import org.blksnap.ctrl.AccessPolicy;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The path rules for callers that are not privileged, in process: a caller is made up from real
 * principals (nobody, nogroup), so nothing runs as another user here (e2e/ControlAccessTest does).
 */
class ControlAccessTest {
    @TempDir
    Path dir;
    Path allowed;
    Path outside;
    ControlAccess access;
    AccessPolicy.Caller nobody;

    @BeforeEach
    void setUp() throws Exception {
        allowed = Files.createDirectory(dir.resolve("allowed"));
        outside = Files.createDirectory(dir.resolve("outside"));
        access = ControlAccess.create(null, List.of(allowed), dir.resolve("data"));
        var lookup = FileSystems.getDefault().getUserPrincipalLookupService();
        UserPrincipal user = lookup.lookupPrincipalByName("nobody");
        GroupPrincipal group = lookup.lookupPrincipalByGroupName("nogroup");
        nobody = new AccessPolicy.Caller(user, group, false);
    }

    @Test
    void withoutAControlGroupOnlyRootAndTheDaemonsUserAreAdmitted() throws Exception {
        var lookup = FileSystems.getDefault().getUserPrincipalLookupService();
        assertThat(access.admit(lookup.lookupPrincipalByName("root"), lookup.lookupPrincipalByGroupName("root"))
                .privileged()).isTrue();
        assertThatThrownBy(() -> access.admit(nobody.user(), nobody.group()))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EPERM))
                .hasMessageContaining("user nobody may not use the control API");
        assertThat(access.socketGroup()).isNull();
    }

    @Test
    void aPathInsideIsGivenResolvedAndOneOutsideOrThroughALinkIsRefused() throws Exception {
        Files.createSymbolicLink(dir.resolve("via"), allowed);
        Path used = access.withPath(nobody, dir.resolve("via").resolve("new.img"), "test path", p -> p, p -> { });
        assertThat(used).isEqualTo(allowed.toRealPath().resolve("new.img"));

        assertThatThrownBy(() -> access.withPath(nobody, outside.resolve("x.img"), "test path", p -> p, p -> { }))
                .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EPERM))
                .hasMessageContaining("outside the allowed directories");
        Path target = Files.writeString(outside.resolve("target"), "x");
        Files.createSymbolicLink(allowed.resolve("link"), target);
        assertThatThrownBy(() -> access.withPath(nobody, allowed.resolve("link"), "test path", p -> p, p -> { }))
                .hasMessageContaining("resolves to " + target.toRealPath());
    }

    @Test
    void anOperationThatOpensAFileOutsideIsUndoneAndRefused() throws Exception {
        // as if a directory on the way had been swapped for a link between the check and the open
        Path elsewhere = Files.writeString(outside.resolve("elsewhere"), "x");
        List<String> undone = new ArrayList<>();
        List<FileChannel> open = new ArrayList<>();
        try {
            assertThatThrownBy(() -> access.withPath(nobody, allowed.resolve("s.img"), "test path", p -> {
                try {
                    open.add(FileChannel.open(elsewhere, StandardOpenOption.READ));
                } catch (java.io.IOException e) {
                    throw new RuntimeException(e);
                }
                return "result";
            }, undone::add))
                    .isInstanceOfSatisfying(BlksnapException.class, e -> assertThat(e.errno()).isEqualTo(Errno.EPERM))
                    .hasMessageContaining("the file opened was not the one checked")
                    .hasMessageContaining(elsewhere.toRealPath().toString());
            assertThat(undone).containsExactly("result");
        } finally {
            for (FileChannel c : open) {
                c.close();
            }
        }
    }
}
