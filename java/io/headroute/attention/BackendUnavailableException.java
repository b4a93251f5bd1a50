package io.headroute.attention;

/** The requested backend cannot run here; the message is one line meant for the user. */
public final class BackendUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception whose message is shown to the user as is.
     *
     * @param message one line saying why the backend cannot run
     */
    public BackendUnavailableException(String message) {
        super(message);
    }
}
