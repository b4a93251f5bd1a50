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
    // head · query tiles + query tile, layout head = h, or 0 when one layout serves every head; with
    // layout_per_block, c = blockIdx.x (lists merged on the host per launched compacted tile).
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
    int layout_per_block;        // 1: one list per launched block (cell = blockIdx.x), for compacted rows
};

static_assert(sizeof(void*) == 8, "64-bit device pointers expected");
static_assert(offsetof(AttnParams, kv_offsets) == 56, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, q_rows) == 88, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, tiles_total) == 104, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, q_batch_stride) == 112, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, batch) == 208, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, scale) == 240, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, layout_heads) == 248, "AttnParams layout changed: update AttentionParams.java");
static_assert(offsetof(AttnParams, layout_per_block) == 252, "AttnParams layout changed: update AttentionParams.java");
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

// Block-sparse: the listed key tiles of one (layout head, query tile) cell, or of this block's own cell
// (layout_per_block: compacted rows come from several query tiles, so the host merged their lists).
// Full tiles need no mask except the tile holding the end of S (its zero-filled keys must not count);
// partial ones use bits.
template <int BR, int BC>
struct HrSparseKeys {
    const int* list;
    const unsigned long long* masks;  // this cell's first partial entry
    int n, n_full, tail_tile;
    __device__ __forceinline__ HrSparseKeys(const AttnParams& p, int h, int qtile) {
        const int q_tiles = (p.q_len + BR - 1) / BR;
        const int cell = p.layout_per_block ? (int)blockIdx.x : (p.layout_heads == 1 ? 0 : h) * q_tiles + qtile;
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
