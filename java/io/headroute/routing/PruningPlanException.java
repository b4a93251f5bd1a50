package io.headroute.routing;

/** A pruning plan that is malformed or does not fit its model; the message is one line. */
public final class PruningPlanException extends IllegalArgumentException {
    public PruningPlanException(String message) {
        super(message);
    }
}
