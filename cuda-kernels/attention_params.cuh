// headroute: the one flat parameter record of the attention kernels, and what every kernel shares:
// which (batch, head, query tile) a block owns, which query rows that tile holds, and which key tiles
// it visits (dense/causal order, or a block-sparse list).
//
// Mirrored field by field (same order, same offsets) by io.headroute.engine.cuda.AttentionParams on the
// Java side, which writes it little-endian into the kernel's by-value argument. Pointers first, then
// 64-bit strides, then 32-bit sizes and scalars, so there is no padding to disagree about.
#pragma once
#include <cstddef>
#include <cstdint>

struct AttnParams {
    const void* q;          // (B, H, L, D) in the kernel's dtype, rows 16-byte aligned
    const void* k;          // (B, Hkv, S, D)
    const void* v;          // (B, Hkv, S, D)
    void* o;                // (B, H, L, D), same dtype as q
    float* lse;             // (B, H, L) natural-log log-sum-exp of the scaled scores; nullable
    const float* gate;      // (B, L, H) row multipliers; nullable (then every gate is 1)
    const int* tiles;       // optional work list of (b, h, query tile) triples; nullable = the whole grid
    // Block-sparse key lists in kernel tiles (sparse kernels only; null otherwise). Cell c = layout
    // head · query tiles + query tile, layout head = h, or 0 when one layout serves every head.
    const int* kv_offsets;     // (cells + 1): cell c lists kv_tiles[kv_offsets[c] .. kv_offsets[c + 1])
    const int* kv_tiles;       // per cell: its full key tiles, then its partial ones
    const int* kv_full_before; // (cells + 1): full tiles in cells < c; cell c has the difference of two
    const unsigned long long* kv_masks;  // per partial entry t of cell c, at (t − kv_full_before[c + 1])·Br:
                                         // Br words, bit c of word r = (row r of the block, key c) allowed
    // Token-granular gating (compaction; null otherwise): per (b, h) the query rows whose gate is
    // non-zero, ascending, and their number. Query tile t of (b, h) is then rows t·Br … of that list.
    const int* q_rows;      // (B, H, L)
    const int* q_counts;    // (B, H)
    // Entries in `tiles` as a device int (a work list built on the device, whose length the host never
    // reads): blocks with blockIdx.x ≥ *tiles_total of a maximal grid exit at once. Null: num_tiles.
    const int* tiles_total;

    int64_t q_batch_stride, q_head_stride, q_row_stride;  // in elements
    int64_t k_batch_stride, k_head_stride, k_row_stride;
    int64_t v_batch_stride, v_head_stride, v_row_stride;
    int64_t o_batch_stride, o_head_stride, o_row_stride;

    int batch, heads, kv_heads;  // H % Hkv == 0; query head h reads kv head h / (H / Hkv)
    int q_len, kv_len;           // L ≤ S; query i sits at position i + (S − L)
    int head_dim;
    int causal;                  // 1: key j allowed only when j ≤ i + (S − L)
    int num_tiles;               // entries in `tiles` (when non-null and tiles_total is null)
    float scale;                 // softmax scale (1/sqrt(D) by default)
    float scale_log2;            // scale · log2(e): the kernels use exp2
    int layout_heads;            // heads of the block-sparse lists: 1 (shared) or H
    // 4 bytes of tail padding (the record is 8-byte aligned): the host writes them as zero.
};

static_assert(sizeof(void*) == 8, "64-bit device pointers expected");
static_assert(offsetof(AttnParams, kv_offsets) == 56, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, q_rows) == 88, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, tiles_total) == 104, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, q_batch_stride) == 112, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, batch) == 208, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, scale) == 240, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, layout_heads) == 248, "AttnParams layout changed: update AttentionParams.java");
static_assert(sizeof(AttnParams) == 256, "AttnParams layout changed: update AttentionParams.java");

// Rows skipped for a zero gate, and rows without any allowed key, report this log-sum-exp.
__device__ __forceinline__ float hr_neg_inf() { return __int_as_float(0xff800000); }

// Resolves the (batch, head, query tile) of this block: from the work list when there is one, else
// from the grid (x = query tile, y = head, z = batch). `reverse` runs the last query tiles first, which
// under a causal mask are the longest, so the tail of the grid is short work. Returns false for a block
// past the end of a device-sized work list (tiles_total): the whole block returns before any barrier.
__device__ __forceinline__ bool hr_block_tile(const AttnParams& p, bool reverse, int& qtile, int& h, int& b) {
    if (p.tiles != nullptr) {
        if (p.tiles_total != nullptr && (int)blockIdx.x >= *p.tiles_total) return false;
        const int* t = p.tiles + 3 * blockIdx.x;
        b = t[0];
        h = t[1];
        qtile = t[2];
    } else {
        qtile = reverse ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
        h = blockIdx.y;
        b = blockIdx.z;
    }
    return true;
}

// The query rows a block owns: rows base … base + count − 1 of the L queries, or (compacted) entries
// base … of the ascending list idx of one (b, h). Either way row(r) grows with r.
struct HrRows {
    const int* idx;  // null: plain rows
    int base;
    int count;       // valid rows, 0 … Br
    __device__ __forceinline__ int row(int r) const { return idx != nullptr ? idx[base + r] : base + r; }
};

__device__ __forceinline__ HrRows hr_rows(const AttnParams& p, int b, int h, int qtile, int br) {
    HrRows rows;
    rows.base = qtile * br;
    if (p.q_rows != nullptr) {
        const int bh = b * p.heads + h;
        rows.idx = p.q_rows + (int64_t)bh * p.q_len;
        rows.count = min(br, p.q_counts[bh] - rows.base);
    } else {
        rows.idx = nullptr;
        rows.count = min(br, p.q_len - rows.base);
    }
    return rows;
}

// Plain rows only (q_rows ignored): the rows of the block-sparse kernels that read their own tile's list
// (compacted rows run the merging kernels instead).
__device__ __forceinline__ HrRows hr_plain_rows(const AttnParams& p, int qtile, int br) {
    HrRows rows;
    rows.idx = nullptr;
    rows.base = qtile * br;
    rows.count = min(br, p.q_len - rows.base);
    return rows;
}

// The gate of query row i of (b, h); 1 without a gate.
__device__ __forceinline__ float hr_gate(const AttnParams& p, int b, int i, int h) {
    return p.gate == nullptr ? 1.f : p.gate[((int64_t)b * p.q_len + i) * p.heads + h];
}

// Query tiles whose rows all have gate 0 do no work: this writes their zeros and lse −inf and returns
// true (the block then returns). Every thread of the block must call it: it contains a barrier.
// (Compacted tiles hold only rows with a non-zero gate and never call it: i0 would not be a row.)
template <typename T>
__device__ __forceinline__ bool hr_skip_gated_tile(const AttnParams& p, T* O, int b, int h, int i0, int rows) {
    bool live = false;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const int i = i0 + r;
        live |= i < p.q_len && hr_gate(p, b, i, h) != 0.f;
    }
    if (__syncthreads_or(live)) return false;
    const T zero = T(0.f);
    const int d = p.head_dim;
    for (int e = threadIdx.x; e < rows * d; e += blockDim.x) {
        const int i = i0 + e / d;
        if (i < p.q_len) O[i * p.o_row_stride + e % d] = zero;
    }
    if (p.lse != nullptr)
        for (int r = threadIdx.x; r < rows && i0 + r < p.q_len; r += blockDim.x)
            p.lse[((int64_t)b * p.heads + h) * p.q_len + i0 + r] = hr_neg_inf();
    return true;
}

// How a key tile is masked: not at all, by the rule "key < S and (causal ⇒ key ≤ position)", or by the
// tile's precomputed bits (partial blocks of a sparse layout: exact for every pattern).
enum HrMask { HR_MASK_NONE = 0, HR_MASK_RULE = 1, HR_MASK_BITS = 2 };

// Dense and causal: key tiles 0 … n − 1; under a causal mask the tiles wholly above the diagonal are
// not in the count, and only tiles from first_masked on (the diagonal, the end of S) pay for a mask.
template <int BC>
struct HrDenseKeys {
    static constexpr bool kStaged = false;
    int n;
    int first_masked;
    __device__ __forceinline__ HrDenseKeys(const AttnParams& p, int first_row, int last_row) {
        const int offset = p.kv_len - p.q_len;
        int kv_end = p.kv_len;
        if (p.causal) kv_end = min(kv_end, last_row + offset + 1);  // later key tiles are above the diagonal
        n = last_row < first_row ? 0 : (kv_end + BC - 1) / BC;
        // From this tile on some (row, key) pair may be masked: a key past the end, or (causal) a key after
        // the position of the tile's first row.
        first_masked = p.kv_len / BC;
        if (p.causal) first_masked = min(first_masked, (first_row + offset + 1) / BC);
    }
    __device__ __forceinline__ int count() const { return n; }
    __device__ __forceinline__ int tile(int idx) const { return idx; }
    __device__ __forceinline__ int mask(int idx, int) const { return idx >= first_masked ? HR_MASK_RULE : HR_MASK_NONE; }
    __device__ __forceinline__ const unsigned long long* bits(int) const { return nullptr; }
};

// Block-sparse: the listed key tiles of one (layout head, query tile) cell (compacted rows, which come
// from several query tiles, merge their tiles' lists on the device: HrMergedKeys).
// Full tiles need no mask except the tile holding the end of S (its zero-filled keys must not count);
// partial ones use bits.
template <int BR, int BC>
struct HrSparseKeys {
    static constexpr bool kStaged = false;
    const int* list;
    const unsigned long long* masks;  // this cell's first partial entry
    int n, n_full, tail_tile;
    __device__ __forceinline__ HrSparseKeys(const AttnParams& p, int h, int qtile) {
        const int q_tiles = (p.q_len + BR - 1) / BR;
        const int cell = (p.layout_heads == 1 ? 0 : h) * q_tiles + qtile;
        const int t0 = p.kv_offsets[cell];
        list = p.kv_tiles + t0;
        n = p.kv_offsets[cell + 1] - t0;
        const int full_end = p.kv_full_before[cell + 1];
        n_full = full_end - p.kv_full_before[cell];
        masks = p.kv_masks + (int64_t)(t0 + n_full - full_end) * BR;
        tail_tile = p.kv_len % BC == 0 ? 0x7fffffff : p.kv_len / BC;
    }
    __device__ __forceinline__ int count() const { return n; }
    __device__ __forceinline__ int tile(int idx) const { return list[idx]; }
    // idx-th listed tile, whose index kt the caller already holds.
    __device__ __forceinline__ int mask(int idx, int kt) const {
        return idx >= n_full ? HR_MASK_BITS : (kt == tail_tile ? HR_MASK_RULE : HR_MASK_NONE);
    }
    __device__ __forceinline__ const unsigned long long* bits(int idx) const { return masks + (int64_t)(idx - n_full) * BR; }
};

// Where a kernel's merge state (HrMergedKeys) starts in its dynamic shared memory: after the loop's own
// `bytes`, 16-byte aligned. The host adds hr_merge_smem_bytes to the launch (FlashPlan.mergeSharedBytes).
__host__ __device__ constexpr int hr_merge_offset(int bytes) { return (bytes + 15) / 16 * 16; }
__host__ __device__ constexpr int hr_merge_smem_bytes(int br, int key_tiles) {
    return 2 * br * 8 + br * 6 * 4 + (key_tiles + 31) / 32 * 4 + 2 * (br / 32) * 4;
}
static_assert(hr_merge_smem_bytes(64, 512) == 2640, "merge state changed: update FlashPlan.mergeSharedBytes");
static_assert(hr_merge_smem_bytes(32, 33) == 1296, "merge state changed: update FlashPlan.mergeSharedBytes");
static_assert(hr_merge_offset(69633) == 69648, "merge offset changed: update FlashPlan.mergeOffset");

// Block-sparse for compacted query rows, merged on the device: the rows of a compacted tile come from
// several original query tiles, whose lists (the layout's cells) differ. The block visits, ascending,
// the key tiles some of its rows may use; a row's allowed keys in key tile kt are its own cell's: all
// valid keys for a full entry, the entry's bits for a partial one, none where its cell does not list kt.
// The same tiles as the host's model of the merge (CompactedSparseTiles, from which the engine counts
// the work), without the merged lists ever being uploaded: the one kernel for compacted rows on a
// sparse layout, whether the work list was built from a host gate (run) or on the device (GPU models).
//
// State in dynamic shared memory at `extra` (hr_merge_smem_bytes): the words of two key tiles (Br each:
// the tile being computed and the next), per row a cursor into its cell's full and partial entries, a
// bitmap over the key tiles of those to visit, and per 32 rows whether one of their valid rows may use
// each of the two tiles (written with kGroupVotes: the two-warpgroup tilings' skip). The loop calls
// tile(0), tile(1), ... once each and in order (the next set bit after the last); stage(j, kt) writes tile
// j's words (thread r < Br: row r) into buffer j & 1, which the loop reads after the barrier that follows;
// the constructor stages tile 0. Every thread of the block constructs it (barriers inside).
template <int BR, int BC, bool kGroupVotes = false>
struct HrMergedKeys {
    static_assert(BR % 32 == 0, "whole warps stage the rows");
    static constexpr bool kStaged = true;
    static constexpr bool kVotes = kGroupVotes;
    const int* list;                      // p.kv_tiles
    const unsigned long long* all_masks;  // p.kv_masks
    unsigned long long* words;            // [2][BR]
    int* cur;                             // [BR][6]: full cursor, full end, partial cursor, partial end,
                                          // full_before[cell + 1], row within its tile
    int* group_any;                       // [2][BR / 32], after the bitmap: kGroupVotes
    const unsigned* bitmap;
    int n, first, live_rows, kv_len;
    mutable int prev;

    __device__ __forceinline__ HrMergedKeys(const AttnParams& p, int h, const HrRows& rows, unsigned char* extra) {
        words = reinterpret_cast<unsigned long long*>(extra);
        cur = reinterpret_cast<int*>(extra + 2 * BR * 8);
        unsigned* bm = reinterpret_cast<unsigned*>(extra + 2 * BR * 8 + BR * 6 * 4);
        bitmap = bm;
        list = p.kv_tiles;
        all_masks = p.kv_masks;
        live_rows = rows.count;
        kv_len = p.kv_len;
        const int q_tiles = (p.q_len + BR - 1) / BR;
        const int nw = ((p.kv_len + BC - 1) / BC + 31) / 32;
        group_any = reinterpret_cast<int*>(bm + nw);  // after the bitmap: the other kernels' offsets stay put
        for (int x = threadIdx.x; x < nw; x += blockDim.x) bm[x] = 0u;
        __syncthreads();
        const int r = threadIdx.x;
        if (r < BR && r < rows.count) {
            const int i = rows.row(r);
            const int qt = i / BR;
            const int cell = (p.layout_heads == 1 ? 0 : h) * q_tiles + qt;
            const int t0 = p.kv_offsets[cell];
            const int t1 = p.kv_offsets[cell + 1];
            const int fb1 = p.kv_full_before[cell + 1];
            const int full_end = t0 + fb1 - p.kv_full_before[cell];
            // The bitmap holds exactly the key tiles some row may use: its cell's full tiles (added by the
            // first row of each original tile; rows ascend, so a tile's rows are consecutive) and the partial
            // ones whose bits for this row are not all zero.
            if (r == 0 || rows.row(r - 1) / BR != qt)
                for (int t = t0; t < full_end; ++t) atomicOr(&bm[list[t] >> 5], 1u << (list[t] & 31));
            for (int t = full_end; t < t1; ++t)
                if (all_masks[(int64_t)(t - fb1) * BR + (i - qt * BR)] != 0ull) atomicOr(&bm[list[t] >> 5], 1u << (list[t] & 31));
            int* c = cur + 6 * r;
            c[0] = t0;
            c[1] = full_end;
            c[2] = full_end;
            c[3] = t1;
            c[4] = fb1;
            c[5] = i - qt * BR;
        }
        __syncthreads();
        n = 0;
        first = 0;
        for (int x = nw - 1; x >= 0; --x) {
            const unsigned w = bitmap[x];
            if (w != 0u) first = 32 * x + __ffs((int)w) - 1;
            n += __popc(w);
        }
        prev = -1;
        if (n > 0) stage(0, first);
    }

    __device__ __forceinline__ int count() const { return n; }
    // The idx-th tile to visit: called for idx = 0, 1, ... in order, each once.
    __device__ __forceinline__ int tile(int idx) const {
        if (idx == 0) {
            prev = first;
            return first;
        }
        const int x = prev + 1;
        int wi = x >> 5;
        unsigned w = bitmap[wi] & (~0u << (x & 31));
        while (w == 0u) w = bitmap[++wi];
        prev = 32 * wi + __ffs((int)w) - 1;
        return prev;
    }
    __device__ __forceinline__ int mask(int, int) const { return HR_MASK_BITS; }
    __device__ __forceinline__ const unsigned long long* bits(int idx) const { return words + (idx & 1) * BR; }
    // kGroupVotes: per group of 32 rows, whether one of its valid rows may use the idx-th tile (read as bits()).
    __device__ __forceinline__ const int* group_votes(int idx) const { return group_any + (idx & 1) * (BR / 32); }

    // Thread r < Br writes row r's allowed-key word of key tile kt (the idx-th) into buffer idx & 1,
    // advancing its cursors (kt ascends, and so do its cell's full and partial entries).
    __device__ __forceinline__ void stage(int idx, int kt) const {
        const int r = threadIdx.x;
        if (r >= BR) return;
        unsigned long long w = ~0ull;  // a row past the block's count: never written out
        if (r < live_rows) {
            int* c = cur + 6 * r;
            int fc = c[0];
            const int fe = c[1];
            while (fc < fe && list[fc] < kt) ++fc;
            c[0] = fc;
            if (fc < fe && list[fc] == kt) {
                const int valid = min(BC, kv_len - kt * BC);
                w = valid >= 64 ? ~0ull : (1ull << valid) - 1ull;
            } else {
                int pc = c[2];
                const int pe = c[3];
                while (pc < pe && list[pc] < kt) ++pc;
                c[2] = pc;
                w = pc < pe && list[pc] == kt ? all_masks[(int64_t)(pc - c[4]) * BR + c[5]] : 0ull;
            }
        }
        if constexpr (kGroupVotes) {
            // Every lane of the warp is here (BR is whole warps; the rows past the count rejoin above).
            const int any = __any_sync(0xffffffffu, r < live_rows && w != 0ull);
            if ((r & 31) == 0) group_any[(idx & 1) * (BR / 32) + r / 32] = any;
        }
        words[(idx & 1) * BR + r] = w;
    }
};
