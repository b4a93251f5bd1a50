package io.headroute.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class ResourcesTest {
    @Test
    void closesEveryResourceInOrderAndThrowsTheFirstFailure() {
        List<String> closed = new ArrayList<>();
        IllegalStateException first = new IllegalStateException("first");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Resources.closeAll(
                () -> closed.add("a"),
                () -> {
                    closed.add("b");
                    throw first;
                },
                null,
                () -> {
                    closed.add("c");
                    throw new IOException("second");
                },
                () -> closed.add("d")));
        assertSame(first, e);
        assertEquals(List.of("a", "b", "c", "d"), closed);
        assertEquals(1, e.getSuppressed().length);
        assertEquals("second", e.getSuppressed()[0].getCause().getMessage(), "a checked failure wrapped");
        Resources.closeAll(); // nothing to close
    }

    @Test
    void afterAFailureTheCleanupsErrorsRideAlongOnIt() {
        List<String> closed = new ArrayList<>();
        Error failure = new AssertionError("the work failed");
        Error thrown = Resources.closeAfter(failure, () -> {
            closed.add("x");
            throw new IllegalStateException("cleanup failed");
        }, () -> closed.add("y"));
        assertSame(failure, thrown);
        assertEquals(List.of("x", "y"), closed);
        assertEquals("cleanup failed", thrown.getSuppressed()[0].getMessage());
    }
}
