package org.blksnap.util;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.helpers.MessageFormatter;

class RateLimitedLogTest {
    private static final Pattern SUMMARY = Pattern.compile("^([0-9,]+) more things in the last (\\d+) s .*; last: (.*)$");

    private final Queue<String> lines = new ConcurrentLinkedQueue<>();
    private final AtomicLong clock = new AtomicLong();

    private RateLimitedLog log(int full) {
        return new RateLimitedLog((format, args) -> lines.add(MessageFormatter.arrayFormat(format, args).getMessage()),
                "things", full, Duration.ofSeconds(10), clock::get);
    }

    @Test
    void theFirstEventsOfAnIntervalAreLoggedInFullAndTheRestAsOneCountWhenTheIntervalEnds() {
        RateLimitedLog log = log(3);
        for (int i = 0; i < 1234 + 3; i++) {
            log.log("event {}", i);
        }
        assertThat(lines).containsExactly("event 0", "event 1", "event 2");
        clock.addAndGet(Duration.ofSeconds(10).toNanos());
        log.log("event {}", "next");
        assertThat(lines).containsExactly("event 0", "event 1", "event 2",
                "1,234 more things in the last 10 s (not logged one by one); last: event 1236", "event next");
        assertThat(log.total()).isEqualTo(1238);
    }

    @Test
    void flushWritesTheCountOfTheLastBurstOnceAndNothingWhenNothingWasHeldBack() {
        RateLimitedLog log = log(1);
        log.flush();
        log.log("a");
        log.flush();
        assertThat(lines).containsExactly("a");
        log.log("b");
        log.log("c {}", "x", new IOException("boom"));
        clock.addAndGet(Duration.ofSeconds(3).toNanos());
        log.flush();
        log.flush();
        assertThat(lines).containsExactly("a", "b",
                "1 more things in the last 3 s (not logged one by one); last: c x (java.io.IOException: boom)");
    }

    @Test
    void aSummaryIsNotReadAsAFormatEvenWhenTheLastMessageHasBraces() {
        RateLimitedLog log = log(0);
        log.log("{}", "name {}");
        log.flush();
        assertThat(lines).singleElement().asString().endsWith("last: name {}");
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void underConcurrentEventsAndFlushesEveryEventIsLoggedInFullOrCountedExactlyOnce() throws Exception {
        RateLimitedLog log = log(5);
        int threads = 8;
        int perThread = 20_000;
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> all = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int id = t;
            all.add(Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < perThread; i++) {
                    log.log("t{} i{}", id, i);
                    if (i % 1000 == 0) {
                        clock.addAndGet(Duration.ofSeconds(4).toNanos()); // intervals end while others log
                    }
                }
            }));
        }
        Thread flusher = Thread.ofPlatform().start(() -> {
            try {
                while (true) {
                    log.flush();
                    Thread.sleep(1);
                }
            } catch (InterruptedException e) {
                // done
            }
        });
        go.countDown();
        for (Thread t : all) {
            t.join();
        }
        flusher.interrupt();
        flusher.join();
        log.flush();

        long full = 0;
        long counted = 0;
        int summaries = 0;
        for (String line : lines) {
            Matcher m = SUMMARY.matcher(line);
            if (m.matches()) {
                counted += Long.parseLong(m.group(1).replace(",", ""));
                summaries++;
                assertThat(m.group(3)).matches("t\\d i\\d+");
            } else {
                assertThat(line).matches("t\\d i\\d+");
                full++;
            }
        }
        assertThat(full + counted).as("events seen, in full or counted").isEqualTo((long) threads * perThread);
        assertThat(log.total()).isEqualTo((long) threads * perThread);
        assertThat(summaries).as("events were held back and counted").isPositive();
        assertThat(counted).isPositive();
    }
}
