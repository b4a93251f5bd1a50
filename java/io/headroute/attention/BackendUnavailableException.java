package io.headroute.attention;

/** The requested backend cannot run here; the message is one line meant for the user. */
public final class BackendUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public BackendUnavailableException(String message) {
        super(message);
    }
}
