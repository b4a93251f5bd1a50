package io.headroute.routing;

/** A pruning plan that is malformed or does not fit its model; the message is one line. */
public final class PruningPlanException extends IllegalArgumentException {
    /**
     * An exception whose message is shown to the user as is.
     *
     * @param message one line; a plan read from a file names the file first
     */
    public PruningPlanException(String message) {
        super(message);
    }
}
