package org.blksnap.util;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class FirstFailureTest {

    @Test
    void everyStepRunsAndTheFirstFailureCarriesTheRestAsSuppressed() {
        List<String> ran = new ArrayList<>();
        FirstFailure f = new FirstFailure();
        IOException one = new IOException("one");
        IllegalStateException two = new IllegalStateException("two");
        f.run(() -> ran.add("a"));
        f.run(() -> {
            ran.add("b");
            throw one;
        });
        f.run(() -> {
            ran.add("c");
            throw two;
        });
        f.run(() -> ran.add("d"));
        assertThat(ran).containsExactly("a", "b", "c", "d");
        assertThat(f.count()).isEqualTo(2);
        assertThat(f.first()).isSameAs(one);
        assertThat(one.getSuppressed()).containsExactly(two);
        assertThatThrownBy(() -> f.throwIfAny(IOException.class, e -> new IOException("wrapped", e))).isSameAs(one);
    }

    @Test
    void aFirstFailureOfAnotherTypeIsWrapped() {
        FirstFailure f = new FirstFailure();
        IllegalStateException x = new IllegalStateException("x");
        f.add(x);
        assertThatThrownBy(() -> f.throwIfAny(IOException.class, e -> new IOException("closing: " + e.getMessage(), e)))
                .isInstanceOf(IOException.class).hasMessage("closing: x").hasCause(x);
    }

    @Test
    void nothingIsThrownWithoutAFailureAndTheSameExceptionIsNotSuppressedInItself() {
        FirstFailure f = new FirstFailure();
        f.throwIfAny(UncheckedIOException.class, e -> new UncheckedIOException(new IOException(e)));
        assertThat(f.first()).isNull();
        IOException e = new IOException("e");
        f.add(e);
        f.add(e);
        assertThat(e.getSuppressed()).isEmpty();
        assertThat(f.count()).isEqualTo(2);
    }
}
