package io.headroute.pattern;

import java.util.Arrays;

/**
 * A token-level attention rule "query i may attend key j", in absolute positions: query i of L sits
 * at p = i + (S − L) (bottom-right alignment), key j at j. Every backend evaluates a pattern through
 * {@link #allowedKeys}, which lists a row's allowed keys as ranges, so nothing of size L × S is ever
 * built. Parse specs with {@link Patterns#parse}.
 */
public sealed interface Pattern
        permits Pattern.Dense, Pattern.Causal, Pattern.Window, Pattern.Longformer, Pattern.BigBird,
                Pattern.Layout, Pattern.CausalOf, Pattern.HeadsOf, Pattern.Positioned {

    /**
     * Fills {@code out} (cleared first) with the keys in [0, kvLen) that position p of head h may attend.
     *
     * @param head  the head h, in [0, H)
     * @param p     the query's absolute position, i + (S − L)
     * @param kvLen S, the keys
     * @param out   receives the allowed keys
     */
    void allowedKeys(int head, int p, int kvLen, KeyRanges out);

    /**
     * The keys of a run of positions p0 … p1 (inclusive) of head h, for block layouts: {@code any} (cleared
     * first) gets the keys that <em>some</em> position may attend, {@code all} (cleared first) the keys
     * that <em>every</em> position may attend. With {@code causal}, each position p also keeps only j ≤ p.
     * Exact, and computed from the pattern's structure in time independent of p1 − p0 for the
     * token-level patterns and proportional to the pattern blocks spanned for bigbird and layouts.
     *
     * @param head   the head h, in [0, H)
     * @param p0     the first absolute position of the run
     * @param p1     the last absolute position of the run, at least p0
     * @param kvLen  S, the keys
     * @param causal whether each position p keeps only keys j ≤ p as well
     * @param any    receives the keys some position of the run may attend
     * @param all    receives the keys every position of the run may attend
     */
    void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all);

    /**
     * {@return the spec this pattern was parsed from, in canonical form}: {@link Patterns#parse} of it gives an equal
     * pattern, except for a layout (its source file is re-read) and the internal causal and head-subset wrappers,
     * whose specs end in {@code +causal} and {@code #heads=…}.
     */
    String spec();

    /**
     * Checks the pattern fits H heads, L queries and S keys; throws {@link PatternException} if not. Token-level
     * patterns fit any sizes.
     *
     * @param heads H, the query heads attending
     * @param qLen  L, the queries
     * @param kvLen S, the keys
     */
    default void check(int heads, int qLen, int kvLen) {}

    /** {@return the pattern's own block size in tokens (bigbird, layout), or 0 for token-level patterns} */
    default int blockSize() {
        return 0;
    }

    /** {@return true when every query may attend every key (no masking at all)} */
    default boolean isDense() {
        return false;
    }

    /** {@return whether the pattern differs between heads (bigbird's random blocks, per-head layouts)} */
    default boolean perHead() {
        return false;
    }

    /** {@return this pattern with the causal rule j ≤ p added}; a pattern already causal returns itself. */
    default Pattern withCausal() {
        return new CausalOf(this);
    }

    /**
     * Convenience for tests and debugging: whether position p of head h may attend key j. Allocates a
     * {@link KeyRanges} per call.
     *
     * @param head  the head h
     * @param p     the query's absolute position
     * @param key   the key j
     * @param kvLen S, the keys
     * @return whether j is among {@link #allowedKeys}
     */
    default boolean allows(int head, int p, int key, int kvLen) {
        KeyRanges r = new KeyRanges();
        allowedKeys(head, p, kvLen, r);
        return r.contains(key);
    }

    /** A pattern parameter below its least value, refused with the parser's message. */
    private static void atLeast(String spec, String name, int value, int least) {
        if (value < least) {
            throw new PatternException("pattern " + Patterns.quote(spec) + ": " + name + " must be "
                    + (least == 0 ? ">= 0" : "> 0") + ", got " + value);
        }
    }

    /** {@code dense}: every key. */
    record Dense() implements Pattern {
        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            out.add(0, kvLen, kvLen);
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            Spans.prefix(p0, p1, kvLen, causal, any, all);
        }

        @Override
        public String spec() {
            return "dense";
        }

        @Override
        public boolean isDense() {
            return true;
        }

        @Override
        public Pattern withCausal() {
            return new Causal();
        }
    }

    /** {@code causal}: j ≤ p. */
    record Causal() implements Pattern {
        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            out.add(0, (long) p + 1, kvLen);
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            Spans.prefix(p0, p1, kvLen, true, any, all);
        }

        @Override
        public String spec() {
            return "causal";
        }

        @Override
        public Pattern withCausal() {
            return this;
        }
    }

    /**
     * {@code window:W}: |p − j| ≤ W.
     *
     * @param w W, the keys on each side of the query's position, at least 0
     */
    record Window(int w) implements Pattern {
        /**
         * Refuses W &lt; 0 (it would leave every row empty: o = 0, lse = −∞) as {@link Patterns#parse} does.
         *
         * @param w W, at least 0
         * @throws PatternException when W &lt; 0
         */
        public Window {
            atLeast("window:" + w, "W", w, 0);
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            out.add((long) p - w, (long) p + w + 1, kvLen);
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            any.clear();
            all.clear();
            Spans.band(w, p0, p1, kvLen, causal, any, all);
        }

        @Override
        public String spec() {
            return "window:" + w;
        }
    }

    /**
     * {@code longformer:W:G}: |p − j| ≤ W, or j &lt; G, or p &lt; G.
     *
     * @param w W, the band's keys on each side, at least 0
     * @param g G, the global positions (keys every query sees, queries that see every key), at least 0
     */
    record Longformer(int w, int g) implements Pattern {
        /**
         * Refuses W or G below 0, as {@link Patterns#parse} does.
         *
         * @param w W, at least 0
         * @param g G, at least 0
         * @throws PatternException when W or G is below 0
         */
        public Longformer {
            atLeast("longformer:" + w + ":" + g, "W", w, 0);
            atLeast("longformer:" + w + ":" + g, "G", g, 0);
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            if (p < g) {
                out.add(0, kvLen, kvLen);
                return;
            }
            out.add(0, g, kvLen);
            out.add((long) p - w, (long) p + w + 1, kvLen);
        }

        /**
         * Positions below G (global rows) see every key (j ≤ p with causal); the others see the G global
         * keys plus their band, and ∩ over rows of ([0, G) ∪ band) = [0, G) ∪ ∩ bands. Since p ≥ G there,
         * the causal rule never cuts the global keys.
         */
        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            any.clear();
            all.clear();
            boolean hasGlobal = p0 < g;
            boolean hasLocal = p1 >= g;
            if (hasGlobal) {
                Spans.prefix(p0, Math.min(p1, g - 1), kvLen, causal, any, all);
            }
            if (hasLocal) {
                KeyRanges localAny = new KeyRanges();
                KeyRanges localAll = new KeyRanges();
                int q0 = Math.max(p0, g);
                Spans.band(w, q0, p1, kvLen, causal, localAny, localAll);
                localAny.add(0, g, kvLen);
                localAll.add(0, g, kvLen);
                any.addAll(localAny);
                if (hasGlobal) {
                    all.retainAll(localAll);
                } else {
                    all.set(localAll);
                }
            }
        }

        @Override
        public String spec() {
            return "longformer:" + w + ":" + g;
        }
    }

    /**
     * {@code bigbird:BS:W:G:R:SEED}: with qb = p / BS and kb = j / BS, |qb − kb| ≤ W, or qb &lt; G, or
     * kb &lt; G, or kb is one of the R random blocks of (head, qb) given by {@link BigBirdRandom}.
     *
     * @param bs   BS, the tokens per block, at least 1
     * @param w    W, the window in blocks on each side, at least 0
     * @param g    G, the global blocks, at least 0
     * @param r    R, the random key blocks per (head, query block), at least 0; with R &gt; 0 the pattern is per head
     * @param seed SEED of the random blocks
     */
    record BigBird(int bs, int w, int g, int r, long seed) implements Pattern {
        /**
         * Refuses BS below 1 and W, G or R below 0, as {@link Patterns#parse} does.
         *
         * @param bs   BS, at least 1
         * @param w    W, at least 0
         * @param g    G, at least 0
         * @param r    R, at least 0
         * @param seed any value
         * @throws PatternException when a size is below its least value
         */
        public BigBird {
            String spec = "bigbird:" + bs + ":" + w + ":" + g + ":" + r + ":" + seed;
            atLeast(spec, "BS", bs, 1);
            atLeast(spec, "W", w, 0);
            atLeast(spec, "G", g, 0);
            atLeast(spec, "R", r, 0);
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            int qb = p / bs;
            if (qb < g) {
                out.add(0, kvLen, kvLen);
                return;
            }
            out.add(0, (long) g * bs, kvLen);
            out.add(((long) qb - w) * bs, ((long) qb + w + 1) * bs, kvLen);
            if (r > 0) {
                int keyBlocks = (int) (((long) kvLen + bs - 1) / bs); // long: a block near 2^31 overflowed
                for (int kb : BigBirdRandom.blocks(seed, head, qb, keyBlocks, r)) {
                    out.add((long) kb * bs, (long) (kb + 1) * bs, kvLen);
                }
            }
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            Spans.byBlocks(this, bs, head, p0, p1, kvLen, causal, any, all);
        }

        @Override
        public String spec() {
            return "bigbird:" + bs + ":" + w + ":" + g + ":" + r + ":" + seed;
        }

        @Override
        public int blockSize() {
            return bs;
        }

        @Override
        public boolean perHead() {
            return r > 0;
        }
    }

    /**
     * {@code layout:BS:FILE}: a boolean block layout of shape (1 or H, n, n) with n = ceil(S / BS);
     * entry [h, p / BS, j / BS] says whether position p may attend key j.
     *
     * @param bs     BS, the tokens per block, at least 1
     * @param heads  the stored heads, 1 (shared by all heads) or H
     * @param blocks n, the blocks per side
     * @param bits   heads · n · n entries, row-major [h][qb][kb]; copied on construction and by the accessor
     * @param source where the layout came from (the file path), shown in its spec and messages
     */
    record Layout(int bs, int heads, int blocks, boolean[] bits, String source) implements Pattern {
        /**
         * Checks the block size and the bits' length, and copies the bits.
         *
         * @param bs     BS, at least 1
         * @param heads  1 or H
         * @param blocks n
         * @param bits   heads · n · n entries
         * @param source the layout's origin, for messages
         * @throws PatternException         when BS &lt; 1
         * @throws IllegalArgumentException when {@code bits} has not heads · n · n entries
         */
        public Layout {
            atLeast("layout:" + bs + ":" + source, "BS", bs, 1);
            if (bits.length != (long) heads * blocks * blocks) {
                throw new IllegalArgumentException("layout bits do not match its shape");
            }
            bits = bits.clone();
        }

        /** {@return a copy of the bits, heads · n · n entries, row-major [h][qb][kb]: the pattern cannot be changed} */
        @Override
        public boolean[] bits() {
            return bits.clone();
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            out.clear();
            int hh = heads == 1 ? 0 : head;
            int row = (hh * blocks + p / bs) * blocks;
            int kb = 0;
            while (kb < blocks) {
                while (kb < blocks && !bits[row + kb]) {
                    kb++;
                }
                int start = kb;
                while (kb < blocks && bits[row + kb]) {
                    kb++;
                }
                if (kb > start) {
                    out.add((long) start * bs, (long) kb * bs, kvLen);
                }
            }
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            Spans.byBlocks(this, bs, head, p0, p1, kvLen, causal, any, all);
        }

        @Override
        public void check(int h, int qLen, int kvLen) {
            int need = (int) (((long) kvLen + bs - 1) / bs);
            if (blocks != need) {
                throw new PatternException("layout " + source + " has " + blocks + "x" + blocks + " blocks of " + bs
                        + ", but S = " + kvLen + " needs " + need + "x" + need);
            }
            if (heads != 1 && heads != h) {
                throw new PatternException("layout " + source + " has " + heads + " heads, but H = " + h
                        + " heads attend (--heads, or the inputs' H): a layout holds 1 or " + h);
            }
        }

        @Override
        public String spec() {
            return "layout:" + bs + ":" + source;
        }

        @Override
        public int blockSize() {
            return bs;
        }

        @Override
        public boolean perHead() {
            return heads > 1;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Layout l && l.bs == bs && l.heads == heads && l.blocks == blocks
                    && Arrays.equals(l.bits, bits) && l.source.equals(source);
        }

        @Override
        public int hashCode() {
            return (31 * (31 * bs + heads) + blocks) * 31 + Arrays.hashCode(bits);
        }

        @Override
        public String toString() {
            return "Layout[" + spec() + ", " + heads + "x" + blocks + "x" + blocks + "]";
        }
    }

    /**
     * A per-head rule pattern seen by some of its heads: head i of this pattern is head {@code heads[i]} of
     * {@code inner} (a pruned layer's calls, whose heads are renumbered from 0). The rule is evaluated as
     * {@code inner}'s, so nothing of size heads × blocks² is built (bigbird at L = 50000 on 1-token blocks would
     * take 2.5·10⁹ entries per head).
     *
     * @param inner the pattern of the full layer
     * @param heads for each head of this pattern, its head in {@code inner}, each at least 0; copied on
     *              construction and by the accessor
     */
    record HeadsOf(Pattern inner, int[] heads) implements Pattern {
        /**
         * Copies and checks the head map.
         *
         * @param inner the full layer's pattern
         * @param heads the heads of {@code inner} seen, in this pattern's head order
         * @throws IllegalArgumentException when a head is negative
         */
        public HeadsOf {
            heads = heads.clone();
            for (int h : heads) {
                if (h < 0) {
                    throw new IllegalArgumentException("head " + h + " of " + inner.spec());
                }
            }
        }

        /** {@return a copy of the head map: the pattern cannot be changed} */
        @Override
        public int[] heads() {
            return heads.clone();
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            inner.allowedKeys(heads[head], p, kvLen, out);
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            inner.spanKeys(heads[head], p0, p1, kvLen, causal, any, all);
        }

        @Override
        public String spec() {
            StringBuilder sb = new StringBuilder(inner.spec()).append("#heads=");
            for (int i = 0; i < heads.length; i++) {
                sb.append(i > 0 ? "," : "").append(heads[i]);
            }
            return sb.toString();
        }

        @Override
        public void check(int h, int qLen, int kvLen) {
            if (h != heads.length) {
                throw new PatternException(spec() + " holds " + heads.length + " heads, but H = " + h + " heads attend");
            }
            inner.check(1 + Arrays.stream(heads).max().orElse(0), qLen, kvLen);
        }

        @Override
        public int blockSize() {
            return inner.blockSize();
        }

        @Override
        public boolean isDense() {
            return inner.isDense();
        }

        @Override
        public boolean perHead() {
            return true;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof HeadsOf x && x.inner.equals(inner) && Arrays.equals(x.heads, heads);
        }

        @Override
        public int hashCode() {
            return 31 * inner.hashCode() + Arrays.hashCode(heads);
        }

        @Override
        public String toString() {
            return "HeadsOf[" + spec() + "]";
        }
    }

    /**
     * Any pattern with j ≤ p added ({@code --causal}).
     *
     * @param inner the pattern the causal rule is added to
     */
    record CausalOf(Pattern inner) implements Pattern {
        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            inner.allowedKeys(head, p, kvLen, out);
            out.clipBelow(p + 1);
        }

        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            inner.spanKeys(head, p0, p1, kvLen, true, any, all);
        }

        @Override
        public String spec() {
            return inner.spec() + "+causal";
        }

        @Override
        public void check(int heads, int qLen, int kvLen) {
            inner.check(heads, qLen, kvLen);
        }

        @Override
        public int blockSize() {
            return inner.blockSize();
        }

        @Override
        public boolean perHead() {
            return inner.perHead();
        }

        @Override
        public Pattern withCausal() {
            return this;
        }
    }

    /**
     * {@code inner} evaluated at given positions of a longer sequence: the call's L queries are queries
     * {@code qStart} … {@code qStart + L − 1} and its S keys are keys {@code kStart} … {@code kStart + S − 1} of a
     * sequence of {@code keys} keys, on which {@code inner} (the causal rule folded in) is defined. A shard of one
     * attention (split-KV decoding, ring attention) whose rule depends on positions (windows, global tokens,
     * BigBird, layouts, causal) evaluates the whole attention's rule for its part this way. Built by
     * {@code AttentionRequest.Builder.positions}; the request's own L and S are {@code qLen} and {@code kvLen}, and
     * the engines' local position p = i + (S − L) of query i is mapped back to qStart + i.
     *
     * @param inner  the whole attention's pattern (causal folded in), in the sequence's positions; not positioned
     * @param qStart the sequence position of the call's query 0, at least 0
     * @param kStart the sequence position of the call's key 0, at least 0
     * @param keys   the sequence's keys: the S the inner pattern is defined on (layouts' and BigBird's blocks)
     * @param qLen   the call's L, positive, with qStart + L ≤ keys
     * @param kvLen  the call's S, at least L, with kStart + S ≤ keys
     */
    record Positioned(Pattern inner, int qStart, int kStart, int keys, int qLen, int kvLen) implements Pattern {
        private static final ThreadLocal<KeyRanges[]> SCRATCH =
                ThreadLocal.withInitial(() -> new KeyRanges[] {new KeyRanges(), new KeyRanges()});

        /**
         * Checks the positions against the sizes.
         *
         * @param inner  the whole attention's pattern; not null, not itself positioned
         * @param qStart the first query's position
         * @param kStart the first key's position
         * @param keys   the sequence's keys
         * @param qLen   L
         * @param kvLen  S
         * @throws IllegalArgumentException when a position or size is out of range, or {@code inner} is positioned
         */
        public Positioned {
            java.util.Objects.requireNonNull(inner, "inner");
            if (inner instanceof Positioned) {
                throw new IllegalArgumentException("a positioned pattern cannot be positioned again: " + inner.spec());
            }
            if (qLen <= 0 || kvLen < qLen || qStart < 0 || kStart < 0 || (long) qStart + qLen > keys
                    || (long) kStart + kvLen > keys) {
                throw new IllegalArgumentException("positions: queries " + qStart + " … " + ((long) qStart + qLen - 1) + " and keys "
                        + kStart + " … " + ((long) kStart + kvLen - 1) + " must lie in the sequence's " + keys + " keys (L = "
                        + qLen + ", S = " + kvLen + ")");
            }
        }

        /** The sequence position of the query at local position p = i + (S − L). */
        private int position(int p) {
            return p - (kvLen - qLen) + qStart;
        }

        /** {@code abs} (sequence keys) moved to the call's keys: shifted by −kStart, clipped to [0, S). */
        private void local(KeyRanges abs, KeyRanges out) {
            out.clear();
            for (int r = 0; r < abs.size(); r++) {
                out.add((long) abs.start(r) - kStart, (long) abs.end(r) - kStart, kvLen);
            }
        }

        @Override
        public void allowedKeys(int head, int p, int kvLen, KeyRanges out) {
            KeyRanges abs = SCRATCH.get()[0];
            inner.allowedKeys(head, position(p), keys, abs);
            local(abs, out);
        }

        /** Positions and the causal rule are the sequence's: with {@code causal}, position P keeps keys j ≤ P. */
        @Override
        public void spanKeys(int head, int p0, int p1, int kvLen, boolean causal, KeyRanges any, KeyRanges all) {
            KeyRanges[] abs = SCRATCH.get();
            inner.spanKeys(head, position(p0), position(p1), keys, causal, abs[0], abs[1]);
            local(abs[0], any);
            local(abs[1], all);
        }

        @Override
        public String spec() {
            return inner.spec() + "@q" + qStart + ",k" + kStart + "/" + keys;
        }

        /** Checks that the call is the one the positions were made for, and {@code inner} against the sequence. */
        @Override
        public void check(int heads, int qLen, int kvLen) {
            if (qLen != this.qLen || kvLen != this.kvLen) {
                throw new PatternException(spec() + " was positioned for L = " + this.qLen + ", S = " + this.kvLen
                        + ", not L = " + qLen + ", S = " + kvLen);
            }
            inner.check(heads, qLen, keys);
        }

        @Override
        public int blockSize() {
            return inner.blockSize();
        }

        @Override
        public boolean isDense() {
            return inner.isDense();
        }

        @Override
        public boolean perHead() {
            return inner.perHead();
        }

        /** {@return the causal rule added in the sequence's positions (key ≤ the query's position)} */
        @Override
        public Pattern withCausal() {
            Pattern c = inner.withCausal();
            return c.equals(inner) ? this : new Positioned(c, qStart, kStart, keys, qLen, kvLen);
        }
    }
}
