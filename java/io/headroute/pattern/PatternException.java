package io.headroute.pattern;

/** A pattern spec or layout that cannot be used; the message is one line meant for the user. */
public final class PatternException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public PatternException(String message) {
        super(message);
    }
}
