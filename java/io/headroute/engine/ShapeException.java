package io.headroute.engine;

/** Inputs whose shapes do not fit the attention contract; the message is one line for the user. */
public final class ShapeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception whose message is shown to the user as is.
     *
     * @param message one line naming the shapes and the rule they break
     */
    public ShapeException(String message) {
        super(message);
    }
}
