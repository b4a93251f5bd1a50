package io.headroute.pattern;

import java.util.Arrays;

/**
 * The keys one query row may attend, as sorted, disjoint, non-adjacent half-open ranges
 * [start, end). A reusable buffer: patterns {@link #clear()} and refill it for each row.
 */
public final class KeyRanges {
    private int[] bounds = new int[8];
    private int count;

    /** Empties the set, keeping the buffer. */
    public void clear() {
        count = 0;
    }

    /** {@return the number of ranges} */
    public int size() {
        return count;
    }

    /**
     * {@return the first key of range r}
     *
     * @param r the range index, in [0, {@link #size()})
     */
    public int start(int r) {
        return bounds[2 * r];
    }

    /**
     * {@return one past the last key of range r}
     *
     * @param r the range index, in [0, {@link #size()})
     */
    public int end(int r) {
        return bounds[2 * r + 1];
    }

    /** {@return the lowest allowed key, or {@code Integer.MAX_VALUE} when there is none} */
    public int first() {
        return count == 0 ? Integer.MAX_VALUE : bounds[0];
    }

    /** {@return one past the highest allowed key, or {@code Integer.MIN_VALUE} when there is none} */
    public int last() {
        return count == 0 ? Integer.MIN_VALUE : bounds[2 * count - 1];
    }

    /** {@return the total number of allowed keys} */
    public long keyCount() {
        long n = 0;
        for (int r = 0; r < count; r++) {
            n += bounds[2 * r + 1] - bounds[2 * r];
        }
        return n;
    }

    /**
     * {@return the number of allowed keys in [from, to)}
     *
     * @param from the first key counted
     * @param to   one past the last key counted
     */
    public int countIn(int from, int to) {
        int n = 0;
        for (int r = 0; r < count; r++) {
            int s = Math.max(from, bounds[2 * r]);
            int e = Math.min(to, bounds[2 * r + 1]);
            if (e > s) {
                n += e - s;
            }
        }
        return n;
    }

    /**
     * {@return whether {@code key} is allowed}
     *
     * @param key the key index
     */
    public boolean contains(int key) {
        for (int r = 0; r < count; r++) {
            if (key < bounds[2 * r]) {
                return false;
            }
            if (key < bounds[2 * r + 1]) {
                return true;
            }
        }
        return false;
    }

    /**
     * Adds [start, end) clipped to [0, limit), merging with existing ranges. Ranges are usually
     * added in increasing order, which is the fast path. An empty range after clipping adds nothing.
     *
     * @param start the first key (may be negative: clipped to 0)
     * @param end   one past the last key (may pass {@code limit}: clipped to it)
     * @param limit S, the key count
     */
    public void add(long start, long end, int limit) {
        int s = (int) Math.max(0, start);
        int e = (int) Math.min(limit, end);
        if (e <= s) {
            return;
        }
        if (count == 0 || s > bounds[2 * count - 1]) {
            append(s, e);
            return;
        }
        if (s >= bounds[2 * count - 2]) {
            bounds[2 * count - 1] = Math.max(bounds[2 * count - 1], e);
            return;
        }
        insertAndMerge(s, e);
    }

    /**
     * Makes this a copy of {@code other}.
     *
     * @param other the ranges to copy; unchanged
     */
    public void set(KeyRanges other) {
        if (bounds.length < 2 * other.count) {
            bounds = new int[Math.max(8, 2 * other.count)];
        }
        System.arraycopy(other.bounds, 0, bounds, 0, 2 * other.count);
        count = other.count;
    }

    /**
     * Adds every key of {@code other} (set union).
     *
     * @param other the ranges to add; unchanged
     */
    public void addAll(KeyRanges other) {
        for (int r = 0; r < other.count; r++) {
            add(other.bounds[2 * r], other.bounds[2 * r + 1], Integer.MAX_VALUE);
        }
    }

    /**
     * Keeps only the keys that {@code other} holds too (set intersection), in one merge pass.
     *
     * @param other the ranges to intersect with; unchanged
     */
    public void retainAll(KeyRanges other) {
        int[] a = Arrays.copyOf(bounds, 2 * count);
        int na = count;
        count = 0;
        int i = 0;
        int j = 0;
        while (i < na && j < other.count) {
            int s = Math.max(a[2 * i], other.bounds[2 * j]);
            int e = Math.min(a[2 * i + 1], other.bounds[2 * j + 1]);
            if (s < e) {
                // Inputs are disjoint and non-adjacent, so the pieces are too: append without merging.
                append(s, e);
            }
            if (a[2 * i + 1] < other.bounds[2 * j + 1]) {
                i++;
            } else {
                j++;
            }
        }
    }

    /**
     * {@return the index of the first range that ends after {@code key}, searching from range {@code from}}; size()
     * if none. Walks forward, so callers scanning keys upward pass the last answer back as {@code from}.
     *
     * @param key  the key index
     * @param from the range index to start from, in [0, {@link #size()}]
     */
    public int firstEndingAfter(int key, int from) {
        int r = from;
        while (r < count && bounds[2 * r + 1] <= key) {
            r++;
        }
        return r;
    }

    /**
     * {@return the number of allowed keys in [from, to), looking only at ranges from index {@code first} on}
     *
     * @param from  the first key counted
     * @param to    one past the last key counted
     * @param first the first range index to look at (ranges before it are ignored)
     */
    public int countIn(int from, int to, int first) {
        int n = 0;
        for (int r = first; r < count && bounds[2 * r] < to; r++) {
            int s = Math.max(from, bounds[2 * r]);
            int e = Math.min(to, bounds[2 * r + 1]);
            if (e > s) {
                n += e - s;
            }
        }
        return n;
    }

    /**
     * Keeps only keys below {@code end} (the causal rule: j ≤ p means end = p + 1).
     *
     * @param end one past the highest key kept
     */
    public void clipBelow(int end) {
        while (count > 0 && bounds[2 * count - 2] >= end) {
            count--;
        }
        if (count > 0 && bounds[2 * count - 1] > end) {
            bounds[2 * count - 1] = end;
        }
    }

    private void append(int s, int e) {
        if (2 * count + 2 > bounds.length) {
            bounds = Arrays.copyOf(bounds, bounds.length * 2);
        }
        bounds[2 * count] = s;
        bounds[2 * count + 1] = e;
        count++;
    }

    private void insertAndMerge(int s, int e) {
        int[] old = Arrays.copyOf(bounds, 2 * count);
        int n = count;
        count = 0;
        boolean placed = false;
        for (int r = 0; r < n; r++) {
            int rs = old[2 * r];
            if (!placed && s <= rs) {
                appendMerged(s, e);
                placed = true;
            }
            appendMerged(rs, old[2 * r + 1]);
        }
        if (!placed) {
            appendMerged(s, e);
        }
    }

    private void appendMerged(int s, int e) {
        if (count > 0 && s <= bounds[2 * count - 1]) {
            bounds[2 * count - 1] = Math.max(bounds[2 * count - 1], e);
        } else {
            append(s, e);
        }
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("[");
        for (int r = 0; r < count; r++) {
            if (r > 0) {
                sb.append(", ");
            }
            sb.append(bounds[2 * r]).append("..").append(bounds[2 * r + 1]);
        }
        return sb.append(']').toString();
    }
}
