package org.blksnap.arch;

import static com.tngtech.archunit.base.DescribedPredicate.not;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.equivalentTo;
import static com.tngtech.archunit.core.domain.JavaClass.Predicates.resideInAPackage;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.blksnap.ctrl.FakeBlksnap;
import org.blksnap.engine.device.BlockDevices;
import org.blksnap.engine.module.BlksnapModule;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The seams of docs/engine.md ("Packages"), checked on the compiled main classes: a stray import
 * that crosses one fails the build, so the structure a newcomer reads stays the structure there is.
 */
class LayeringTest {
    private static JavaClasses main;

    @BeforeAll
    static void importMainClasses() {
        main = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("org.blksnap");
    }

    @Test
    void noPackageDependsOnItselfThroughOthers() {
        slices().matching("org.blksnap.(**)").should().beFreeOfCycles().check(main);
    }

    @Test
    void theEngineApiIsALeafThatNeedsOnlyTheJdk() {
        classes().that().resideInAPackage("org.blksnap.engine")
                .should().onlyDependOnClassesThat().resideInAnyPackage("org.blksnap.engine", "java..")
                .check(main);
    }

    @Test
    void theEngineKnowsNothingOfNbdTheControlApiTheCliOrTheDaemon() {
        noClasses().that().resideInAPackage("org.blksnap.engine..")
                .should().dependOnClassesThat().resideInAnyPackage(
                        "org.blksnap.nbd..", "org.blksnap.ctrl..", "org.blksnap.cli..", "org.blksnap.daemon..")
                .check(main);
    }

    @Test
    void persistentStateSitsBetweenTheTrackerAndTheSnapshots() {
        // state keeps trackers on disk: it may use the tracker, the difference storage's ledger seam,
        // devices and the API, never snapshots, events or the module that owns it
        noClasses().that().resideInAPackage("org.blksnap.engine.state..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.engine.snapshot..",
                        "org.blksnap.engine.module..", "org.blksnap.engine.event..", "org.blksnap.util..")
                .check(main);
        // and only the module and the snapshots (take) call it
        noClasses().that().resideInAnyPackage("org.blksnap.engine.tracker..", "org.blksnap.engine.diff..",
                        "org.blksnap.engine.device..", "org.blksnap.engine.event..", "org.blksnap.engine")
                .should().dependOnClassesThat().resideInAPackage("org.blksnap.engine.state..")
                .check(main);
    }

    @Test
    void theNbdServerServesBlockDevicesAndKnowsNothingOfSnapshotsOrTheControlApi() {
        noClasses().that().resideInAPackage("org.blksnap.nbd..")
                .should().dependOnClassesThat().resideInAnyPackage(
                        "org.blksnap.engine.module..", "org.blksnap.engine.tracker..", "org.blksnap.engine.snapshot..",
                        "org.blksnap.engine.diff..", "org.blksnap.engine.event..", "org.blksnap.engine.device..",
                        "org.blksnap.ctrl..", "org.blksnap.cli..", "org.blksnap.daemon..")
                .check(main);
    }

    @Test
    void theWireContractStandsAlone() {
        noClasses().that().resideInAPackage("org.blksnap.ctrl.api")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.engine..", "org.blksnap.nbd..",
                        "org.blksnap.ctrl", "org.blksnap.cli..", "org.blksnap.daemon..", "org.blksnap.util..")
                .check(main);
    }

    @Test
    void theToolTalksToTheDaemonOnlyThroughTheWireContract() {
        noClasses().that().resideInAPackage("org.blksnap.cli..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.engine..", "org.blksnap.nbd..",
                        "org.blksnap.ctrl", "org.blksnap.daemon..")
                .check(main);
    }

    @Test
    void outsideTheEngineOnlyItsApiAndItsFactoriesAreUsed() {
        noClasses().that().resideOutsideOfPackage("org.blksnap.engine..")
                .should().dependOnClassesThat(resideInAPackage("org.blksnap.engine.(*)..")
                        .and(not(equivalentTo(BlksnapModule.class)))
                        .and(not(equivalentTo(BlockDevices.class))))
                .check(main);
    }

    /**
     * Opening and creating backing stores and keeping the device registry are the daemon's job; the
     * control server reaches them only through {@code ctrl.DeviceAdmin}, the seam it declares and the
     * daemon implements, so it never opens a file as a device nor touches the daemon's classes.
     */
    @Test
    void theControlServerLeavesBackingStoresAndTheRegistryToTheDaemon() {
        noClasses().that().resideInAPackage("org.blksnap.ctrl..")
                .should().dependOnClassesThat(equivalentTo(BlockDevices.class)
                        .or(resideInAPackage("org.blksnap.daemon..")))
                .check(main);
    }

    /**
     * Who may call and which paths a caller may name are decided in one place, the daemon's
     * {@code ControlAccess}; the control server reaches it only through {@code ctrl.AccessPolicy}.
     */
    @Test
    void accessDecisionsAreTheDaemons() {
        noClasses().that().resideInAPackage("org.blksnap.ctrl..")
                .should().dependOnClassesThat().haveFullyQualifiedName("java.nio.file.attribute.UserPrincipalLookupService")
                .check(main);
    }

    @Test
    void theEnginesTestDoubleNeedsOnlyTheEnginesApi() {
        noClasses().should().dependOnClassesThat().resideOutsideOfPackages("org.blksnap.engine", "org.blksnap.ctrl",
                        "java..", "org.assertj..")
                .check(new ClassFileImporter().importClasses(FakeBlksnap.class));
        noClasses().should().dependOnClassesThat().resideInAPackage("org.blksnap.engine.(*)..")
                .check(new ClassFileImporter().importClasses(FakeBlksnap.class));
    }

    @Test
    void theBackupRepositoryDependsOnNothingOfOurs() {
        noClasses().that().resideInAPackage("org.blksnap.backup..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.engine..", "org.blksnap.nbd..",
                        "org.blksnap.ctrl..", "org.blksnap.cli..", "org.blksnap.daemon..", "org.blksnap.util..")
                .check(main);
    }

    /**
     * Instant access sits on the repository's read side and the NBD server: it serves points as
     * block devices, and knows nothing of the daemon, its control API or the tool that starts it.
     */
    @Test
    void instantAccessServesTheRepositoryThroughTheNbdServerAlone() {
        noClasses().that().resideInAPackage("org.blksnap.serve..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.ctrl..", "org.blksnap.cli..",
                        "org.blksnap.daemon..")
                .check(main);
        // only the tool starts it: neither the repository nor the server nor the daemon knows of it
        noClasses().that().resideOutsideOfPackages("org.blksnap.serve..", "org.blksnap.cli..")
                .should().dependOnClassesThat().resideInAPackage("org.blksnap.serve..")
                .check(main);
    }

    /**
     * The resident backup agent runs the tool's own {@code backup} inside the daemon: it sits on the
     * tool and the control API's agent seam, and only the daemon, which hosts it, knows of it.
     */
    @Test
    void theBackupAgentIsTheToolHostedByTheDaemon() {
        noClasses().that().resideInAPackage("org.blksnap.agent..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.daemon..", "org.blksnap.nbd..",
                        "org.blksnap.serve..")
                .check(main);
        noClasses().that().resideOutsideOfPackages("org.blksnap.agent..", "org.blksnap.daemon..")
                .should().dependOnClassesThat().resideInAPackage("org.blksnap.agent..")
                .check(main);
    }

    /** The AWS SDK stays behind the repository's storage seam: one class (S3Store) speaks S3. */
    @Test
    void onlyTheRepositorysS3StoreUsesTheAwsSdk() {
        noClasses().that().haveNameNotMatching("org\\.blksnap\\.backup\\.S3Store(\\$.*)?")
                .and().resideInAPackage("org.blksnap..")
                .should().dependOnClassesThat().resideInAPackage("software.amazon..")
                .check(main);
    }

    @Test
    void theUtilitiesDependOnNothingOfOurs() {
        noClasses().that().resideInAPackage("org.blksnap.util..")
                .should().dependOnClassesThat().resideInAnyPackage("org.blksnap.engine..", "org.blksnap.nbd..",
                        "org.blksnap.ctrl..", "org.blksnap.cli..", "org.blksnap.daemon..")
                .check(main);
    }
}
