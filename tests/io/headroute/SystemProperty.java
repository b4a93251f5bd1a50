package io.headroute;

/** A system property set (or cleared, for a null value) while open; closing puts back what it was. */
public final class SystemProperty implements AutoCloseable {
    private final String name;
    private final String saved;

    private SystemProperty(String name, String value) {
        this.name = name;
        this.saved = System.getProperty(name);
        put(value);
    }

    public static SystemProperty set(String name, String value) {
        return new SystemProperty(name, value);
    }

    /** Changes the value again while open (null clears it). */
    public void put(String value) {
        if (value == null) {
            System.clearProperty(name);
        } else {
            System.setProperty(name, value);
        }
    }

    @Override
    public void close() {
        put(saved);
    }
}
