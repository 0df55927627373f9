package org.blksnap.arch;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
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
    void theNbdServerServesBlockDevicesAndKnowsNothingOfSnapshotsOrTheControlApi() {
        noClasses().that().resideInAPackage("org.blksnap.nbd..")
                .should().dependOnClassesThat().resideInAnyPackage(
                        "org.blksnap.engine.module..", "org.blksnap.engine.tracker..", "org.blksnap.engine.snapshot..",
                        "org.blksnap.engine.diff..", "org.blksnap.engine.event..",
                        "org.blksnap.ctrl..", "org.blksnap.cli..", "org.blksnap.daemon..")
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
