// headroute: head skipping on the device, from a gate (B, L, H) already in device memory. Two plans,
// each mirrored exactly by io.headroute.engine.cuda.GateWork on the host (the CPU twin):
//   block granularity: hr_gate_tile_flags marks each (b, h, query tile of Br rows) with any non-zero
//     gate row; hr_gate_work_list turns the flags into the list of active (b, h, tile) triples;
//   token granularity: hr_gate_compact_rows lists per (b, h) the rows with a non-zero gate, in order
//     (stable compaction by a block-wide prefix sum); hr_gate_work_list turns the per-(b, h) row counts
//     into (b, h, tile) triples over the compacted rows, ceil(count / Br) tiles each.
// Lists are ordered by (b, h, tile); the total goes to `total`, which the attention kernels read
// (AttnParams.tiles_total): the engine's `run` launches the host plan's tile count and reads the total back
// after the call to check it, GPU models launch the maximal grid and blocks past the total exit.
#include <cstddef>
#include <cstdint>

struct GateWorkParams {
    const float* gate;  // (B, L, H)
    int* counts;        // per group: tile flags (B·H·T, 0/1), or compacted row counts (B·H)
    int* rows;          // (B, H, L) compacted rows; only hr_gate_compact_rows writes it
    int* list;          // (b, h, tile) triples
    int* total;         // one int: entries in list
    int batch, q_len, heads;
    int tile_rows;      // Br of the attention kernel that will read the list
    int mode;           // HR_WORK_TILES or HR_WORK_ROWS
    int reserved0;
};
static_assert(offsetof(GateWorkParams, batch) == 40, "GateWorkParams layout changed: update GateWork.java");
static_assert(sizeof(GateWorkParams) == 64, "GateWorkParams layout changed: update GateWork.java");

enum { HR_WORK_TILES = 0, HR_WORK_ROWS = 1 };

namespace {

constexpr int kScanThreads = 1024;

// Exclusive prefix sum over the block of one value per thread; *total gets the block's sum. Every
// thread must call it (barriers); `warp_sums` is 32 ints of shared memory.
__device__ __forceinline__ int block_exclusive_scan(int x, int* warp_sums, int* total) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    int inc = x;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += y;
    }
    if (lane == 31) warp_sums[warp] = inc;
    __syncthreads();  // every warp's sum is written
    if (warp == 0) {
        int w = lane < nwarps ? warp_sums[lane] : 0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        if (lane < nwarps) warp_sums[lane] = w;  // inclusive over warps
    }
    __syncthreads();  // the warps' prefixes are written
    const int before = warp == 0 ? 0 : warp_sums[warp - 1];
    *total = warp_sums[nwarps - 1];
    __syncthreads();  // warp_sums is read by all before the next call overwrites it
    return before + inc - x;
}

}  // namespace

// One thread per (b, h, tile): 1 when any of the tile's rows has a non-zero gate.
extern "C" __global__ void __launch_bounds__(256) hr_gate_tile_flags(const GateWorkParams p) {
    const int tiles = (p.q_len + p.tile_rows - 1) / p.tile_rows;
    const int64_t n = (int64_t)p.batch * p.heads * tiles;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int t = (int)(idx % tiles);
    const int h = (int)((idx / tiles) % p.heads);
    const int b = (int)(idx / ((int64_t)tiles * p.heads));
    const int i1 = min(p.q_len, (t + 1) * p.tile_rows);
    int live = 0;
    for (int i = t * p.tile_rows; i < i1 && !live; ++i) live = p.gate[((int64_t)b * p.q_len + i) * p.heads + h] != 0.f;
    p.counts[idx] = live;
}

// One block per (h, b): rows[b, h, 0 … count) = the rows i with gate[b, i, h] ≠ 0, ascending.
extern "C" __global__ void __launch_bounds__(kScanThreads) hr_gate_compact_rows(const GateWorkParams p) {
    __shared__ int warp_sums[32];
    const int h = blockIdx.x;
    const int b = blockIdx.y;
    int* out = p.rows + ((int64_t)b * p.heads + h) * p.q_len;
    int base = 0;
    for (int i0 = 0; i0 < p.q_len; i0 += blockDim.x) {
        const int i = i0 + threadIdx.x;
        const int live = i < p.q_len && p.gate[((int64_t)b * p.q_len + i) * p.heads + h] != 0.f;
        int chunk;
        const int at = block_exclusive_scan(live, warp_sums, &chunk);
        if (live) out[base + at] = i;
        base += chunk;
    }
    if (threadIdx.x == 0) p.counts[b * p.heads + h] = base;
}

// One block: expands per-group counts into (b, h, tile) triples, in group order.
//   HR_WORK_TILES: group g = (b·H + h)·T + t holds 0 or 1 item, the triple (b, h, t);
//   HR_WORK_ROWS:  group g = b·H + h holds ceil(count / Br) items, the triples (b, h, 0 …).
extern "C" __global__ void __launch_bounds__(kScanThreads) hr_gate_work_list(const GateWorkParams p) {
    __shared__ int warp_sums[32];
    const int tiles = (p.q_len + p.tile_rows - 1) / p.tile_rows;
    const int groups = p.mode == HR_WORK_TILES ? p.batch * p.heads * tiles : p.batch * p.heads;
    int base = 0;
    for (int g0 = 0; g0 < groups; g0 += blockDim.x) {
        const int g = g0 + threadIdx.x;
        int items = 0;
        if (g < groups) items = p.mode == HR_WORK_TILES ? p.counts[g] : (p.counts[g] + p.tile_rows - 1) / p.tile_rows;
        int chunk;
        const int at = base + block_exclusive_scan(items, warp_sums, &chunk);
        if (g < groups) {
            const int bh = p.mode == HR_WORK_TILES ? g / tiles : g;
            const int t0 = p.mode == HR_WORK_TILES ? g % tiles : 0;
            for (int u = 0; u < items; ++u) {
                int* e = p.list + 3 * (int64_t)(at + u);
                e[0] = bh / p.heads;
                e[1] = bh % p.heads;
                e[2] = t0 + u;
            }
        }
        base += chunk;
    }
    if (threadIdx.x == 0) *p.total = base;
}
