package io.headroute.pattern;

/** A pattern spec or layout that cannot be used; the message is one line meant for the user. */
public final class PatternException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception whose message is shown to the user as is.
     *
     * @param message one line naming the spec or layout and what is wrong with it
     */
    public PatternException(String message) {
        super(message);
    }
}
