package io.headroute.model;

/** A model configuration or weight file that does not make sense; the message is one line naming what is wrong. */
public class ModelException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception whose message is shown to the user as is.
     *
     * @param message one line naming what is wrong
     */
    public ModelException(String message) {
        super(message);
    }
}
