// Test-only stand-in for the emulator runtime (native/emu/runtime): one trivial kernel, so that the fake
// driver's launch path can be tested before the real runtime lands. Never linked into a real build.
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace {

struct FillArgs {  // the by-value kernel parameter: hr_emu_test_fill(FillArgs a)
    float* out;
    int n;
    float value;
};

}  // namespace

extern "C" int hr_emu_has_kernel(const char* name) { return name != nullptr && std::strcmp(name, "hr_emu_test_fill") == 0; }

// out[i] = value for every thread i = blockIdx.x * blockDim.x + threadIdx.x < n (x only, as the kernel would).
extern "C" int hr_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                             unsigned bz, unsigned smem_bytes, void** args, char* err, size_t err_len) {
    (void) smem_bytes;
    if (!hr_emu_has_kernel(name)) {
        std::snprintf(err, err_len, "no emulated kernel named %s", name != nullptr ? name : "(null)");
        return 1;
    }
    if (args == nullptr || args[0] == nullptr) {
        std::snprintf(err, err_len, "hr_emu_test_fill takes one argument, got none");
        return 1;
    }
    FillArgs a;
    std::memcpy(&a, args[0], sizeof a);
    if (a.n < 0) {
        std::snprintf(err, err_len, "hr_emu_test_fill: n = %d < 0", a.n);
        return 1;
    }
    if (gy != 1 || gz != 1 || by != 1 || bz != 1) {
        std::snprintf(err, err_len, "hr_emu_test_fill is one-dimensional");
        return 1;
    }
    for (unsigned long long i = 0; i < static_cast<unsigned long long>(gx) * bx; i++) {
        if (i < static_cast<unsigned long long>(a.n)) {
            a.out[i] = a.value;
        }
    }
    return 0;
}
