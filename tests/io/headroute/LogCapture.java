package io.headroute;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.Logger;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Property;

/** The log events of one class's logger while open, at {@code level} and above; closing restores the logger. */
public final class LogCapture implements AutoCloseable {
    /** One captured event: its level and formatted message. */
    public record Event(Level level, String message) {}

    private final Logger logger;
    private final Level saved;
    private final List<Event> events = new CopyOnWriteArrayList<>();
    private final AbstractAppender appender;

    private LogCapture(Class<?> source, Level level) {
        logger = (Logger) LogManager.getLogger(source);
        saved = logger.getLevel();
        appender = new AbstractAppender("capture-" + source.getSimpleName(), null, null, true, Property.EMPTY_ARRAY) {
            @Override
            public void append(LogEvent e) {
                events.add(new Event(e.getLevel(), e.getMessage().getFormattedMessage()));
            }
        };
        appender.start();
        logger.addAppender(appender);
        logger.setLevel(level);
    }

    /** Captures what the logger of {@code source} logs at {@code level} and above. */
    public static LogCapture of(Class<?> source, Level level) {
        return new LogCapture(source, level);
    }

    /** The events so far, oldest first. */
    public List<Event> events() {
        return List.copyOf(events);
    }

    /** The events so far at {@code level} or more severe. */
    public List<Event> atLeast(Level level) {
        return events.stream().filter(e -> e.level().isMoreSpecificThan(level)).toList();
    }

    @Override
    public void close() {
        logger.removeAppender(appender);
        logger.setLevel(saved);
        appender.stop();
    }
}
