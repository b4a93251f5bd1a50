package io.headroute.model;

/** A model configuration or weight file that does not make sense; the message is one line naming what is wrong. */
public class ModelException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public ModelException(String message) {
        super(message);
    }
}
