// headroute CPU emulator: runs a kernel launch on the host. Blocks run one after another; the threads
// of a block are fibers of the calling host thread (their own stacks, switched by a few instructions of
// assembly); the lowest-numbered runnable thread runs until it reaches a barrier, a warp operation or its
// end, so warps run as far apart as the kernel's barriers allow. So a
// launch is deterministic, barriers and warp operations have the GPU's meaning, and a kernel that
// diverges on a barrier, deadlocks or misuses shared memory fails with a message instead of hanging.
//
// Entry points for the fake driver (native/emu/driver): hr_emu_launch, hr_emu_has_kernel.
// Blocks whose (x + y + z) is odd prefer the highest-numbered thread instead (races the other way round);
// HR_EMU_SCHEDULE=forward or =reverse uses one order for all blocks. HR_EMU_TRACE=1 prints each launch;
// HR_EMU_STATS=FILE appends what each launch executed (kernel, blocks, mma.sync and ldmatrix warp
// instructions, cp.async bytes, ldmatrix shared-memory wavefronts, votes, wgmma warpgroup instructions,
// wgmma waits that left a group running), one tab-separated line per launch.
#define HR_EMULATION 1
#include "cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#error "the emulator's fiber switch is x86-64 assembly"
#endif

// void hr_emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers, MXCSR and the x87
// control word on the current stack, stores its pointer in *save_sp, and resumes the stack load_sp.
asm(R"(
    .text
    .globl hr_emu_switch
    .hidden hr_emu_switch
    .type hr_emu_switch, @function
hr_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size hr_emu_switch, .-hr_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

extern "C" void hr_emu_switch(void** save_sp, void* load_sp);

namespace hr_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;
constexpr size_t kSlotBytes = 64;

enum class State { Runnable, AtBarrier, AtWarp, Done };

struct CpCopy {
    void* dst;
    const void* src;
    int src_bytes;
};

// One wgmma's result for one thread: the accumulator registers it writes (on the fiber's stack) and the
// values they receive when its group is retired by wgmma.wait_group; the A registers it reads (the tensor
// cores read them after the issue) and their values at the issue.
struct WgResult {
    float* d;
    float v[32];
    const uint32_t* a;
    uint32_t a_at_issue[4];
};

struct Fiber {
    void* sp = nullptr;
    unsigned char* stack = nullptr;  // kStackBytes, a guard page below
    hr_emu_dim3 tid{};
    int linear = 0;
    State state = State::Runnable;
    int warp_op = 0;
    long exchanges = 0;  // warp exchanges this thread took part in (their parity picks the slots)
    std::vector<std::vector<CpCopy>> cp_groups;  // committed groups, oldest first
    std::vector<CpCopy> cp_open;                 // not yet committed
    std::vector<std::vector<WgResult>> wg_groups;  // committed wgmma groups, oldest first
    std::vector<WgResult> wg_open;                 // issued, not yet committed
    std::vector<uint32_t> unfenced;  // 16-byte shared chunks its completed cp.async wrote since its last fence.proxy.async
    long long wg_retired = 0;        // wgmma this thread's waits retired
};

struct Registered {
    Entry entry;
    size_t param_bytes;
};

std::map<std::string, Registered>& registry() {
    static std::map<std::string, Registered> r;
    return r;
}

// The launch in progress (one at a time, under g_launch_mutex).
std::mutex g_launch_mutex;
Entry g_entry = nullptr;
void** g_args = nullptr;
hr_emu_dim3 g_grid{}, g_block{}, g_block_idx{};
int g_threads = 0;
std::vector<Fiber> g_fibers;
Fiber* g_current = nullptr;
void* g_scheduler_sp = nullptr;
bool g_reverse = false;

// Shared memory: the dynamic part of the launch, ending at a guard page.
unsigned char* g_smem_map = nullptr;
size_t g_smem_map_bytes = 0;
unsigned char* g_smem = nullptr;
size_t g_smem_bytes = 0;
// Per 16-byte chunk of shared memory: 1 + the thread whose completed cp.async last wrote it, until that thread's
// fence.proxy.async (0: nothing to fence). wgmma reads shared memory through the async proxy, which sees
// generic-proxy writes only after the writer's fence.proxy.async.
std::vector<int> g_unfenced;
// Per 16-byte chunk: the issued, not yet retired wgmma (one per warp) that read it as B. The tensor cores may
// read B any time until the wait that retires the group, so a cp.async into such a chunk races with them.
std::vector<int> g_wg_readers;
// Per warp: B of its latest wgmma, read from shared memory once for the warp when its last lane arrives
// (wg_gather_done), and the chunks each of its wgmma not yet retired read, oldest first.
float g_wg_b[kMaxThreads / 32][16][64];
// A warp's wgmma not yet retired: the 16-byte shared chunks it reads as B, and their bytes at its issue.
struct WgReads {
    std::vector<uint32_t> chunks;
    std::vector<unsigned char> bytes;
};
std::deque<WgReads> g_wg_chunks[kMaxThreads / 32];
long long g_wg_retired[kMaxThreads / 32];  // the warp's wgmma retired by the first of its lanes to wait for them
long long g_wg_popped[kMaxThreads / 32];   // ... and by all 32 lanes: the index of g_wg_chunks[w].front()

// Block barrier and warp exchange state. Warp exchanges alternate between two sets of slots: a lane can
// deposit for exchange n + 1 while slower lanes still read exchange n, but not for n + 2, which needs
// every lane to have arrived at n + 1, after reading n.
int g_barrier_or = 0;
int g_barrier_at = 0;  // threads waiting at __syncthreads
int g_barrier_pred = 0;
// Where the threads waiting at the barrier reached it: bar.sync (__syncthreads) is .aligned, so every thread must
// reach the same instruction; barrier.sync (a null site here) may be reached from anywhere, but not mixed with it.
const char* g_barrier_site = nullptr;
int g_done = 0;        // threads that exited
unsigned char g_slots[kMaxThreads / 32][2][32][kSlotBytes];
int g_warp_at[kMaxThreads / 32];  // lanes waiting at a warp exchange

// What the warps of a warpgroup issue of wgmma, commit_group and wait_group, in order: the four warps must
// issue the same sequence (one warpgroup instruction; B's descriptor and the flags are the warpgroup's). The
// first warp to take step i records it, the others compare theirs; at the end of the block every warp must
// have taken as many steps.
struct WgStep {
    int kind;  // 0 wgmma, 1 commit_group, 2 wait_group
    unsigned long long desc;
    int flags;  // wgmma: trans-b, bf16, scale-d bits; wait_group: N
    int warp;   // the warp that recorded it
};
std::vector<WgStep> g_wg_log[kMaxThreads / 128];
int g_wg_steps[kMaxThreads / 32];

// What the launch executed, warp-level instructions counted once per warp (HR_EMU_STATS); votes:
// __any_sync, and how many of them came out true.
struct LaunchStats {
    long long blocks, mma, ldmatrix, cp_async_bytes, ldmatrix_wavefronts, votes, votes_true;
    long long wgmma_warps;          // wgmma issued, per warp (4 per warpgroup instruction)
    long long wgmma_overlap_warps;  // wgmma.wait_group that left a committed group running, per warp
} g_stats;

// First error of the launch, and the fiber that raised it.
std::string g_error;

std::string where() {
    char b[160];
    if (g_current == nullptr) return "outside any thread";
    std::snprintf(b, sizeof b, "block (%u, %u, %u) thread (%u, %u, %u)", g_block_idx.x, g_block_idx.y, g_block_idx.z,
                  g_current->tid.x, g_current->tid.y, g_current->tid.z);
    return b;
}

void yield_to_scheduler() {
    Fiber* f = g_current;
    hr_emu_switch(&f->sp, g_scheduler_sp);
}

[[noreturn]] void fiber_main() {
    g_entry(g_args);
    Fiber* f = g_current;
    if (!f->cp_open.empty() || !f->cp_groups.empty()) {
        // Copies never waited for: on the GPU they may or may not land; nothing may depend on them.
        f->cp_open.clear();
        f->cp_groups.clear();
    }
    // Likewise wgmma never waited for (its registers are never read again).
    f->wg_open.clear();
    f->wg_groups.clear();
    f->state = State::Done;
    g_done++;
    yield_to_scheduler();
    std::abort();  // a finished fiber is never resumed
}

// The stack a fresh fiber starts on: hr_emu_switch's frame (MXCSR and control word, six registers) and a
// return address into fiber_main, which itself sees the alignment of a normal call.
void* fresh_stack(Fiber& f) {
    uintptr_t top = reinterpret_cast<uintptr_t>(f.stack) + kStackBytes;
    top &= ~uintptr_t(15);
    auto* p = reinterpret_cast<uint64_t*>(top);
    *--p = 0;                                                // fiber_main's (unused) return address
    *--p = reinterpret_cast<uint64_t>(&fiber_main);          // hr_emu_switch's ret
    for (int i = 0; i < 6; ++i) *--p = 0;                    // rbp rbx r12 r13 r14 r15
    uint32_t mxcsr;
    uint16_t fpcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpcw));
    *--p = (uint64_t)mxcsr | ((uint64_t)fpcw << 32);
    return p;
}

void ensure_fibers(int n) {
    while ((int)g_fibers.size() < n) {
        g_fibers.emplace_back();
        Fiber& f = g_fibers.back();
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            std::fprintf(stderr, "hr-emu: cannot map a fiber stack\n");
            std::abort();
        }
        mprotect(m, page, PROT_NONE);  // a stack overflow faults instead of corrupting the next stack
        f.stack = static_cast<unsigned char*>(m) + page;
    }
}

bool ensure_smem(size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t need = ((bytes + page - 1) / page) * page + page;
    if (g_smem_map_bytes < need) {
        if (g_smem_map != nullptr) munmap(g_smem_map, g_smem_map_bytes);
        void* m = mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            g_smem_map = nullptr;
            g_smem_map_bytes = 0;
            return false;
        }
        g_smem_map = static_cast<unsigned char*>(m);
        g_smem_map_bytes = need;
    }
    mprotect(g_smem_map, g_smem_map_bytes, PROT_READ | PROT_WRITE);
    mprotect(g_smem_map + g_smem_map_bytes - page, page, PROT_NONE);
    // The launch's bytes end at the guard page; 16-byte alignment is kept (sizes are multiples of 16 or
    // the start is rounded down, leaving a few poisoned bytes before it).
    g_smem_bytes = bytes;
    g_smem = g_smem_map + g_smem_map_bytes - page - ((bytes + 15) & ~size_t(15));
    return true;
}

const char* state_name(State s) {
    switch (s) {
        case State::Runnable: return "runnable";
        case State::AtBarrier: return "at __syncthreads";
        case State::AtWarp: return "at a warp operation";
        case State::Done: return "exited";
    }
    return "?";
}

std::string describe_states() {
    std::string s;
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < g_threads; ++i) counts[(int)g_fibers[i].state]++;
    const State all[4] = {State::Runnable, State::AtBarrier, State::AtWarp, State::Done};
    for (int k = 0; k < 4; ++k) {
        if (counts[k] == 0) continue;
        if (!s.empty()) s += ", ";
        s += std::to_string(counts[k]) + " " + state_name(all[k]);
    }
    return s;
}

// Runs one block to its end: resumes runnable threads in order until every thread exited. Barriers and
// warp exchanges are released by their last arriving thread, which goes on running; when no thread can
// run and some have not exited, the block is stuck (divergent barrier or exchange).
bool run_block() {
    for (int i = 0; i < g_threads; ++i) {
        Fiber& f = g_fibers[i];
        f.tid = hr_emu_dim3{(unsigned)(i % g_block.x), (unsigned)((i / g_block.x) % g_block.y), (unsigned)(i / (g_block.x * g_block.y))};
        f.linear = i;
        f.state = State::Runnable;
        f.exchanges = 0;
        f.cp_groups.clear();
        f.cp_open.clear();
        f.wg_groups.clear();
        f.wg_open.clear();
        f.unfenced.clear();
        f.wg_retired = 0;
        f.sp = fresh_stack(f);
    }
    for (int w = 0; w < kMaxThreads / 32; ++w) g_warp_at[w] = 0;
    for (int w = 0; w < kMaxThreads / 32; ++w) g_wg_steps[w] = 0;
    for (auto& log : g_wg_log) log.clear();
    g_barrier_at = 0;
    g_barrier_pred = 0;
    g_done = 0;
    if (g_smem_bytes > 0) std::memset(g_smem, 0xff, g_smem_bytes);
    g_unfenced.assign((g_smem_bytes + 15) / 16, 0);
    g_wg_readers.assign((g_smem_bytes + 15) / 16, 0);
    for (auto& q : g_wg_chunks) q.clear();
    for (auto& r : g_wg_retired) r = 0;
    for (auto& r : g_wg_popped) r = 0;
    // The lowest-numbered runnable thread always goes next (the highest in reverse order): warp 0 runs ahead
    // until it waits at a barrier, so a missing __syncthreads (or __syncwarp) shows as a read of data another
    // thread has not written yet, or has already overwritten. Which of the two orders catches a race depends
    // on the race, so by default blocks alternate between them.
    for (;;) {
        int next = -1;
        for (int k = 0; k < g_threads && next < 0; ++k) {
            const int i = g_reverse ? g_threads - 1 - k : k;
            if (g_fibers[i].state == State::Runnable) next = i;
        }
        if (next < 0) break;
        Fiber& f = g_fibers[next];
        g_current = &f;
        hr_emu_switch(&g_scheduler_sp, f.sp);
        g_current = nullptr;
        if (!g_error.empty()) return false;
    }
    if (g_done == g_threads) {
        for (int w = 0; w < g_threads / 32; ++w) {
            const int first = w / 4 * 4;
            if (g_wg_steps[w] != g_wg_steps[first]) {
                char m[200];
                std::snprintf(m, sizeof m, "block (%u, %u, %u): warpgroup %d: warp %d took %d wgmma/commit/wait steps, warp %d %d",
                              g_block_idx.x, g_block_idx.y, g_block_idx.z, w / 4, first, g_wg_steps[first], w, g_wg_steps[w]);
                g_error = m;
                return false;
            }
        }
        return true;
    }
    char b[240];
    std::snprintf(b, sizeof b, "block (%u, %u, %u): no thread can go on (%s)%s", g_block_idx.x, g_block_idx.y, g_block_idx.z,
                  describe_states().c_str(),
                  g_barrier_at > 0 && g_done > 0 ? ": __syncthreads after some threads exited"
                                                 : ": divergent __syncthreads or warp operation");
    g_error = b;
    return false;
}

void check_mask(unsigned mask, const char* what) {
    if (mask != 0xffffffffu) fail("%s with mask %#x: the emulator supports full-warp masks only", what, mask);
}

}  // namespace

// ------------------------------------------------------------------------------------- device side
const hr_emu_dim3& thread_idx() { return g_current->tid; }
const hr_emu_dim3& block_idx() { return g_block_idx; }
const hr_emu_dim3& block_dim() { return g_block; }
const hr_emu_dim3& grid_dim() { return g_grid; }

int lane_id() { return g_current->linear & 31; }

void fail(const char* fmt, ...) {
    char b[400];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (g_error.empty()) g_error = where() + ": " + b;
    // This fiber never runs again; the scheduler abandons the launch.
    g_current->state = State::Done;
    yield_to_scheduler();
    std::abort();
}

namespace {

// Waits at the block barrier; the last thread to arrive releases the others and goes on.
void block_barrier(int pred, const char* site) {
    if (g_barrier_at == 0) {
        g_barrier_site = site;
    } else if (site != g_barrier_site && (site == nullptr || g_barrier_site == nullptr || std::strcmp(site, g_barrier_site) != 0)) {
        fail("threads meet at a block barrier from different places (%s and %s): __syncthreads (bar.sync) is .aligned, "
             "every thread must reach the same one; two paths that meet use barrier.sync (hr::sync_block_any_site) both",
             g_barrier_site ? g_barrier_site : "barrier.sync", site ? site : "barrier.sync");
    }
    g_barrier_pred |= pred != 0;
    if (++g_barrier_at < g_threads - g_done) {
        g_current->state = State::AtBarrier;
        yield_to_scheduler();
        return;
    }
    if (g_done > 0) fail("__syncthreads reached after %d of %d threads exited", g_done, g_threads);
    g_barrier_or = g_barrier_pred;
    g_barrier_pred = 0;
    g_barrier_at = 0;
    for (int i = 0; i < g_threads; ++i) {
        if (g_fibers[i].state == State::AtBarrier) g_fibers[i].state = State::Runnable;
    }
}

}  // namespace

void sync_threads(const char* site) { block_barrier(0, site); }

int sync_threads_or(int pred, const char* site) {
    block_barrier(pred, site);
    return g_barrier_or;
}

namespace {

// Shared-memory wavefronts of one ldmatrix .x4 (`slots`: each lane's row address): its four 8x8 matrices
// are served one after another, each from the 8 row addresses of lanes 8m … 8m+7, 16 bytes each (4
// consecutive of the 32 four-byte banks); a matrix takes as many wavefronts as the most distinct words
// one bank must deliver (the same word for several lanes is a broadcast). 4 when conflict-free.
long long ldmatrix_wavefronts(const unsigned char (*slots)[kSlotBytes]) {
    long long total = 0;
    for (int m = 0; m < 4; ++m) {
        uintptr_t words[32][8];
        int count[32] = {0};
        int most = 0;
        for (int l = 8 * m; l < 8 * m + 8; ++l) {
            const unsigned char* p;
            std::memcpy(&p, slots[l], sizeof p);
            const uintptr_t first = (uintptr_t)(p - g_smem) / 4;
            for (uintptr_t word = first; word < first + 4; ++word) {
                const int bank = (int)(word % 32);
                bool seen = false;
                for (int i = 0; i < count[bank]; ++i) seen |= words[bank][i] == word;
                if (!seen) {
                    words[bank][count[bank]++] = word;
                    most = std::max(most, count[bank]);
                }
            }
        }
        total += most;
    }
    return total;
}

}  // namespace

bool any_lane_set(const unsigned char* slots) {
    for (int l = 0; l < 32; ++l) {
        int v;
        std::memcpy(&v, slots + kSlotBytes * l, sizeof v);
        if (v != 0) return true;
    }
    return false;
}

void wg_gather_done(int w, const unsigned char* slots);

const unsigned char* warp_gather(int op, const void* in, size_t n, unsigned mask) {
    check_mask(mask, "a warp operation");
    if (g_threads % 32 != 0) fail("warp operation in a block of %d threads (not whole warps)", g_threads);
    if (n > kSlotBytes) fail("warp exchange of %zu bytes", n);
    Fiber* f = g_current;
    const int w = f->linear >> 5;
    const int parity = (int)(f->exchanges++ & 1);
    std::memcpy(g_slots[w][parity][f->linear & 31], in, n);
    f->warp_op = op;
    if (++g_warp_at[w] < 32) {
        f->state = State::AtWarp;
        yield_to_scheduler();
    } else {
        g_warp_at[w] = 0;
        if (op == OP_MMA) g_stats.mma++;
        if (op == OP_LDMATRIX) {
            g_stats.ldmatrix++;
            g_stats.ldmatrix_wavefronts += ldmatrix_wavefronts(g_slots[w][parity]);
        }
        if (op == OP_WGMMA) {
            g_stats.wgmma_warps++;
            wg_gather_done(w, &g_slots[w][parity][0][0]);
        }
        if (op == OP_VOTE) {
            g_stats.votes++;
            g_stats.votes_true += any_lane_set(&g_slots[w][parity][0][0]);
        }
        for (int l = 0; l < 32; ++l) {
            Fiber& o = g_fibers[w * 32 + l];
            if (o.warp_op != op || o.exchanges != f->exchanges)
                fail("lanes of warp %d at different warp operations (divergent code)", w);
            o.state = State::Runnable;
        }
    }
    return &g_slots[w][parity][0][0];
}

void sync_warp(unsigned mask) {
    int dummy = 0;
    warp_gather(OP_SYNCWARP, &dummy, sizeof dummy, mask);
}

unsigned char* dynamic_smem() { return g_smem; }

void check_shared(const void* p, size_t bytes, const char* what) {
    const auto* c = static_cast<const unsigned char*>(p);
    if (c < g_smem || c + bytes > g_smem + g_smem_bytes)
        fail("%s at %p (%zu bytes) outside the block's %zu bytes of dynamic shared memory", what, p, bytes, g_smem_bytes);
    if ((reinterpret_cast<uintptr_t>(c) - reinterpret_cast<uintptr_t>(g_smem)) % 16 != 0)
        fail("%s at shared offset %td: not 16-byte aligned", what, c - g_smem);
}

void cp_async_16(void* smem, const void* gmem, int src_bytes) {
    check_shared(smem, 16, "cp.async destination");
    if (src_bytes != 0 && src_bytes != 16) fail("cp.async with src-size %d (the kernels use 0 or 16)", src_bytes);
    if (src_bytes != 0 && reinterpret_cast<uintptr_t>(gmem) % 16 != 0) fail("cp.async source %p not 16-byte aligned", gmem);
    if (g_wg_readers[(static_cast<unsigned char*>(smem) - g_smem) / 16] > 0)
        fail("cp.async into shared offset %td, which a wgmma not yet retired by wgmma.wait_group reads as B",
             static_cast<unsigned char*>(smem) - g_smem);
    // Until the wait the destination is undefined: poison it now, so that a read before the wait (a missing
    // cp.async.wait_group or barrier) and a thread still reading the old contents (a missing barrier before
    // the buffer is refilled) both see NaN.
    std::memset(smem, 0xff, 16);
    g_stats.cp_async_bytes += 16;
    g_current->cp_open.push_back(CpCopy{smem, gmem, src_bytes});
}

void cp_async_commit() {
    Fiber* f = g_current;
    f->cp_groups.push_back(std::move(f->cp_open));
    f->cp_open.clear();
}

void cp_async_wait(int n) {
    Fiber* f = g_current;
    while ((int)f->cp_groups.size() > n) {
        for (const CpCopy& c : f->cp_groups.front()) {
            if (c.src_bytes == 16) {
                std::memcpy(c.dst, c.src, 16);
            } else {
                std::memset(c.dst, 0, 16);
            }
            const uint32_t chunk = (uint32_t)((static_cast<unsigned char*>(c.dst) - g_smem) / 16);
            g_unfenced[chunk] = f->linear + 1;
            f->unfenced.push_back(chunk);
        }
        f->cp_groups.erase(f->cp_groups.begin());
    }
}

void fence_proxy_async() {
    Fiber* f = g_current;
    for (uint32_t chunk : f->unfenced)
        if (g_unfenced[chunk] == f->linear + 1) g_unfenced[chunk] = 0;
    f->unfenced.clear();
}

void ldmatrix_x4(uint32_t (&r)[4], const void* smem, bool trans) {
    check_shared(smem, 16, "ldmatrix row");
    const void* mine = smem;
    const unsigned char* all = warp_gather(OP_LDMATRIX, &mine, sizeof mine, 0xffffffffu);
    const int lane = lane_id();
    for (int m = 0; m < 4; ++m) {
        uint16_t e[2];
        for (int h = 0; h < 2; ++h) {
            // Matrix m's rows come from lanes 8m … 8m+7; lane gets row lane/4, columns 2(lane%4) + h, or
            // transposed: row 2(lane%4) + h, column lane/4.
            const int row = trans ? 2 * (lane & 3) + h : lane >> 2;
            const int col = trans ? lane >> 2 : 2 * (lane & 3) + h;
            const unsigned char* rowp;
            std::memcpy(&rowp, all + kSlotBytes * (8 * m + row), sizeof rowp);
            std::memcpy(&e[h], rowp + 2 * col, 2);
        }
        r[m] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
}

namespace {

float half_bits(uint32_t reg, int hi, bool bf16) {
    const uint16_t h = (uint16_t)(hi ? reg >> 16 : reg & 0xffffu);
    return bf16 ? hr_emu_half::bf16_to_float(h) : hr_emu_half::f16_to_float(h);
}

struct MmaIn {
    uint32_t a[4];
    uint32_t b[2];
};

}  // namespace

void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16) {
    MmaIn in{{a[0], a[1], a[2], a[3]}, {b0, b1}};
    const unsigned char* all = warp_gather(OP_MMA, &in, sizeof in, 0xffffffffu);
    auto lane_in = [&](int l) {
        MmaIn x;
        std::memcpy(&x, all + kSlotBytes * l, sizeof x);
        return x;
    };
    // A[r][k]: lane 4·(r % 8) + (k % 8) / 2, register (r ≥ 8) + 2·(k ≥ 8), half k % 2.
    // B[k][n]: lane 4·n + (k % 8) / 2, register (k ≥ 8), half k % 2.
    const int lane = lane_id();
    const int g = lane >> 2, t = lane & 3;
    float out[4];
    for (int e = 0; e < 4; ++e) {
        const int r = g + 8 * (e >> 1);
        const int n = 2 * t + (e & 1);
        double s = 0.0;
        for (int k = 0; k < 16; ++k) {
            const MmaIn la = lane_in(4 * (r & 7) + ((k & 7) >> 1));
            const MmaIn lb = lane_in(4 * n + ((k & 7) >> 1));
            const float av = half_bits(la.a[(r >= 8) + 2 * (k >= 8)], k & 1, bf16);
            const float bv = half_bits(lb.b[k >= 8], k & 1, bf16);
            s += (double)av * (double)bv;
        }
        out[e] = (float)((double)c[e] + s);
    }
    for (int e = 0; e < 4; ++e) c[e] = out[e];
}

namespace {

// The accumulators' contents from a wgmma's issue to its wait (a quiet NaN in every register).
const float kWgPoison[32] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
                             NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};

struct WgIn {
    uint32_t a[4];
    uint64_t desc;
    int flags;  // bit 0 trans_b, bit 1 bf16, bit 2 scale_d
};

// The newest value a thread's wgmma left for accumulator register block d (issued or committed, not yet
// retired): the next wgmma on the same registers accumulates onto it, as the hardware chains them.
const WgResult* pending_for(const Fiber& f, const float* d) {
    for (auto it = f.wg_open.rbegin(); it != f.wg_open.rend(); ++it)
        if (it->d == d) return &*it;
    for (auto g = f.wg_groups.rbegin(); g != f.wg_groups.rend(); ++g)
        for (auto it = g->rbegin(); it != g->rend(); ++it)
            if (it->d == d) return &*it;
    return nullptr;
}

}  // namespace

const char* wg_step_name(int kind) { return kind == 0 ? "wgmma" : kind == 1 ? "wgmma.commit_group" : "wgmma.wait_group"; }

// Records (lane 0) or checks this warp's next warpgroup step against the one its warpgroup took first.
void wg_step(int kind, unsigned long long desc, int flags) {
    if (lane_id() != 0) return;
    const int warp = g_current->linear / 32;
    std::vector<WgStep>& log = g_wg_log[warp / 4];
    const int n = g_wg_steps[warp]++;
    if (n == (int)log.size()) {
        log.push_back(WgStep{kind, desc, flags, warp});
        return;
    }
    const WgStep& s = log[n];
    if (s.kind != kind || s.desc != desc || s.flags != flags)
        fail("warpgroup %d, step %d: warp %d issued %s (descriptor %#llx, flags %d) where warp %d issued %s (descriptor %#llx, "
             "flags %d): the four warps of a warpgroup issue one instruction",
             warp / 4, n, warp, wg_step_name(kind), desc, flags, s.warp, wg_step_name(s.kind), s.desc, s.flags);
}

uint64_t wgmma_desc_base(const void* smem) {
    check_shared(smem, 16, "wgmma matrix descriptor start");
    return (uint64_t)((static_cast<const unsigned char*>(smem) - g_smem) >> 4);
}

// The warp's wgmma, once all 32 lanes have deposited their operands (run by the last to arrive, before any
// lane goes on): the lanes agree on descriptor and flags; B is read from shared memory into g_wg_b[w] — at
// the issue, as far as the program can tell: until the wait that retires it, any cp.async into those chunks
// fails (g_wg_readers), the wait fails if any other store changed them in between, and so does reading a chunk
// a cp.async wrote before its thread's fence.proxy.async.
void wg_gather_done(int w, const unsigned char* slots) {
    auto lane_in = [&](int l) {
        WgIn x;
        std::memcpy(&x, slots + kSlotBytes * l, sizeof x);
        return x;
    };
    const WgIn first = lane_in(0);
    for (int l = 1; l < 32; ++l) {
        const WgIn x = lane_in(l);
        if (x.desc != first.desc || x.flags != first.flags)
            fail("wgmma: lanes of one warp give different descriptors or flags (lane 0 %#llx/%d, lane %d %#llx/%d)",
                 (unsigned long long)first.desc, first.flags, l, (unsigned long long)x.desc, x.flags);
    }
    const uint64_t desc = first.desc;
    const bool trans_b = (first.flags & 1) != 0, bf16 = (first.flags & 2) != 0;
    // Descriptor (PTX ISA, matrix descriptor format): start address, leading and stride byte offsets, all
    // in 16-byte units in bits 0-13, 16-29, 32-45; base offset bits 49-51; swizzle mode bits 62-63.
    if ((desc >> 62) != 0) fail("wgmma descriptor %#llx: swizzled layouts are not emulated", (unsigned long long)desc);
    if (((desc >> 49) & 7) != 0) fail("wgmma descriptor %#llx: nonzero base offset", (unsigned long long)desc);
    const size_t start = (size_t)(desc & 0x3fff) << 4;
    const size_t lbo = (size_t)((desc >> 16) & 0x3fff) << 4;
    const size_t sbo = (size_t)((desc >> 32) & 0x3fff) << 4;
    // B (16 × 64) from no-swizzle core matrices (8 rows of 16 bytes, 128 contiguous bytes): K-major
    // (trans_b = 0): element (k, n) at start + (n / 8)·SBO + (n % 8)·16 + (k / 8)·LBO + (k % 8)·2; MN-major
    // (trans_b = 1): start + (n / 8)·SBO + (n % 8)·2 + (k / 8)·LBO + (k % 8)·16. LBO steps along K, SBO
    // along N in both (CUTLASS's canonical INTERLEAVE layouts).
    std::vector<uint32_t> chunks;
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 64; ++n) {
            const size_t row = start + (n / 8) * sbo + (k / 8) * lbo + (trans_b ? (k % 8) * 16 : (n % 8) * 16);
            check_shared(g_smem + row, 16, "wgmma B core-matrix row");
            if ((trans_b ? n % 8 : k % 8) == 0) {  // each 16-byte row once
                chunks.push_back((uint32_t)(row / 16));
                if (const int writer = g_unfenced[row / 16])
                    fail("wgmma reads shared offset %zu, which thread %d wrote by cp.async without a fence.proxy.async "
                         "since (the async proxy need not see it)", row, writer - 1);
            }
            uint16_t h;
            std::memcpy(&h, g_smem + row + 2 * (trans_b ? n % 8 : k % 8), 2);
            g_wg_b[w][k][n] = bf16 ? hr_emu_half::bf16_to_float(h) : hr_emu_half::f16_to_float(h);
        }
    WgReads reads;
    reads.bytes.resize(16 * chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
        g_wg_readers[chunks[i]]++;
        std::memcpy(&reads.bytes[16 * i], g_smem + 16 * (size_t)chunks[i], 16);
    }
    reads.chunks = std::move(chunks);
    g_wg_chunks[w].push_back(std::move(reads));
}

void wgmma_m64n64k16(float* d, const uint32_t (&a)[4], uint64_t desc, bool trans_b, bool bf16, bool scale_d) {
    if (g_threads % 128 != 0) fail("wgmma in a block of %d threads (not whole warpgroups)", g_threads);
    WgIn in{{a[0], a[1], a[2], a[3]}, desc, (trans_b ? 1 : 0) | (bf16 ? 2 : 0) | (scale_d ? 4 : 0)};
    const unsigned char* all = warp_gather(OP_WGMMA, &in, sizeof in, 0xffffffffu);
    auto lane_in = [&](int l) {
        WgIn x;
        std::memcpy(&x, all + kSlotBytes * l, sizeof x);
        return x;
    };
    wg_step(0, (unsigned long long)desc, in.flags);
    const float(&b)[16][64] = g_wg_b[g_current->linear >> 5];
    // This warp's 16 rows of A in the mma.m16n8k16 A-fragment layout; this thread's accumulators: register
    // 4j + e holds row g + 8·(e / 2), column 8j + 2t + e % 2.
    Fiber& f = *g_current;
    const WgResult* prev = pending_for(f, d);
    const float* acc = prev != nullptr ? prev->v : d;
    const int lane = lane_id();
    const int g = lane >> 2, t = lane & 3;
    WgResult out;
    out.d = d;
    out.a = a;
    std::memcpy(out.a_at_issue, a, sizeof out.a_at_issue);
    for (int j = 0; j < 8; ++j)
        for (int e = 0; e < 4; ++e) {
            const int r = g + 8 * (e >> 1);
            const int n = 8 * j + 2 * t + (e & 1);
            double s = 0.0;
            for (int k = 0; k < 16; ++k) {
                const WgIn la = lane_in(4 * (r & 7) + ((k & 7) >> 1));
                s += (double)half_bits(la.a[(r >= 8) + 2 * (k >= 8)], k & 1, bf16) * (double)b[k][n];
            }
            out.v[4 * j + e] = (float)((scale_d ? (double)acc[4 * j + e] : 0.0) + s);
        }
    f.wg_open.push_back(out);
    // Until its group is retired the accumulators are undefined: a read before wgmma.wait_group sees NaN.
    std::memcpy(d, kWgPoison, sizeof kWgPoison);
}

void wgmma_commit() {
    wg_step(1, 0, 0);
    Fiber* f = g_current;
    f->wg_groups.push_back(std::move(f->wg_open));
    f->wg_open.clear();
}

void wgmma_wait(int n) {
    wg_step(2, 0, n);
    Fiber* f = g_current;
    while ((int)f->wg_groups.size() > n) {
        std::vector<WgResult> done = std::move(f->wg_groups.front());
        f->wg_groups.erase(f->wg_groups.begin());
        // The first lane of the warp past the wait retires its wgmma (wgmma.wait_group is warp-wide): their B
        // chunks may be refilled from then on.
        const int w = f->linear >> 5;
        for (size_t i = 0; i < done.size(); ++i) {
            if (++f->wg_retired > g_wg_retired[w]) {
                g_wg_retired[w] = f->wg_retired;
                for (uint32_t c : g_wg_chunks[w][(size_t)(f->wg_retired - 1 - g_wg_popped[w])].chunks) g_wg_readers[c]--;
            }
        }
        // Once every lane of the warp is past the wait (the emulator runs them one after another; on the GPU they
        // pass it together, so a store any lane made before it in program order came first): the B chunks must
        // hold what they held at the issue. Any store between (st.shared as well as cp.async) raced with the
        // tensor cores' reads: on the GPU the wgmma may have read either value.
        long long all = f->wg_retired;
        for (int l = 0; l < 32; ++l) all = std::min(all, g_fibers[32 * w + l].wg_retired);
        while (g_wg_popped[w] < all) {
            const WgReads& reads = g_wg_chunks[w].front();
            for (size_t k = 0; k < reads.chunks.size(); ++k) {
                const size_t at = 16 * (size_t)reads.chunks[k];
                if (std::memcmp(&reads.bytes[16 * k], g_smem + at, 16) != 0)
                    fail("shared offset %zu, which warp %d's wgmma reads as B, changed between the wgmma and the "
                         "wgmma.wait_group that retires it (the tensor cores may read it until then)", at, w);
            }
            g_wg_chunks[w].pop_front();
            g_wg_popped[w]++;
        }
        // The hardware reads A and writes D between the issue and the wait: a thread that wrote either in
        // between raced with the tensor cores (on the GPU: wrong results, or ptxas serializing the wgmma).
        for (const WgResult& r : done) {
            if (std::memcmp(r.d, kWgPoison, sizeof kWgPoison) != 0)
                fail("wgmma accumulator registers written between the wgmma and its wgmma.wait_group");
            if (std::memcmp(r.a, r.a_at_issue, sizeof r.a_at_issue) != 0)
                fail("wgmma A registers changed between the wgmma and its wgmma.wait_group");
        }
        // Each accumulator block takes its newest retired value, unless a wgmma still pending writes it too.
        for (size_t i = 0; i < done.size(); ++i) {
            bool later = pending_for(*f, done[i].d) != nullptr;
            for (size_t k = i + 1; k < done.size(); ++k) later |= done[k].d == done[i].d;
            if (!later) std::memcpy(done[i].d, done[i].v, sizeof done[i].v);
        }
    }
    // A wait that leaves work on the tensor cores while the warp goes on (the overlap WGP is built for).
    if (!f->wg_groups.empty() && lane_id() == 0) g_stats.wgmma_overlap_warps++;
}

void register_kernel(const char* name, Entry entry, size_t param_bytes) {
    registry()[name] = Registered{entry, param_bytes};
}

}  // namespace hr_emu

// ----------------------------------------------------------------------------------- driver side
extern "C" int hr_emu_has_kernel(const char* name) {
    return name != nullptr && hr_emu::registry().count(name) != 0;
}

extern "C" int hr_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                             unsigned smem_bytes, void** args, char* err, size_t err_len) {
    using namespace hr_emu;
    auto error = [&](const std::string& m) {
        if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "%s", m.c_str());
        return 1;
    };
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    auto it = registry().find(name == nullptr ? "" : name);
    if (it == registry().end()) return error(std::string("no emulated kernel named ") + (name ? name : "(null)"));
    const long threads = (long)bx * by * bz;
    if (gx == 0 || gy == 0 || gz == 0 || threads == 0 || threads > kMaxThreads)
        return error("grid (" + std::to_string(gx) + ", " + std::to_string(gy) + ", " + std::to_string(gz) + ") block (" +
                     std::to_string(bx) + ", " + std::to_string(by) + ", " + std::to_string(bz) + "): empty or over 1024 threads");
    if (args == nullptr || args[0] == nullptr) return error("no kernel parameter record");
    const char* sched = std::getenv("HR_EMU_SCHEDULE");
    const int order = sched == nullptr ? 0 : std::strcmp(sched, "forward") == 0 ? 1 : std::strcmp(sched, "reverse") == 0 ? 2 : 0;
    if (std::getenv("HR_EMU_TRACE") != nullptr)
        std::fprintf(stderr, "hr-emu: %s grid (%u, %u, %u) block (%u, %u, %u) smem %u, parameter record %zu bytes\n", name, gx, gy,
                     gz, bx, by, bz, smem_bytes, it->second.param_bytes);
    if (!ensure_smem(smem_bytes)) return error("cannot map " + std::to_string(smem_bytes) + " bytes of shared memory");
    ensure_fibers((int)threads);
    g_entry = it->second.entry;
    g_args = args;
    g_grid = hr_emu_dim3{gx, gy, gz};
    g_block = hr_emu_dim3{bx, by, bz};
    g_threads = (int)threads;
    g_error.clear();
    g_stats = LaunchStats{(long long)gx * gy * gz, 0, 0, 0, 0, 0, 0, 0, 0};
    for (unsigned z = 0; z < gz; ++z) {
        for (unsigned y = 0; y < gy; ++y) {
            for (unsigned x = 0; x < gx; ++x) {
                g_block_idx = hr_emu_dim3{x, y, z};
                g_reverse = order == 2 || (order == 0 && (x + y + z) % 2 == 1);
                if (!run_block()) {
                    std::string m = std::string(name) + ": " + g_error;
                    g_error.clear();
                    return error(m);
                }
            }
        }
    }
    if (const char* path = std::getenv("HR_EMU_STATS")) {
        // One line per launch: kernel, blocks, mma.sync, ldmatrix (warp instructions), cp.async bytes,
        // ldmatrix wavefronts, __any_sync votes, votes that came out true, wgmma (warpgroup instructions), wgmma
        // waits that left a group running (per warpgroup).
        if (FILE* f = std::fopen(path, "a")) {
            std::fprintf(f, "%s\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\n", name, g_stats.blocks,
                         g_stats.mma, g_stats.ldmatrix, g_stats.cp_async_bytes, g_stats.ldmatrix_wavefronts, g_stats.votes,
                         g_stats.votes_true, g_stats.wgmma_warps / 4, g_stats.wgmma_overlap_warps / 4);
            std::fclose(f);
        }
    }
    return 0;
}
