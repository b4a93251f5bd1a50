// headroute CPU emulator: the 16-bit float types of cuda_fp16.h / cuda_bf16.h, for host compilation of
// the kernels. Storage and rounding as on the GPU: IEEE binary16 and bfloat16 bits, float -> 16 bit
// round-to-nearest-even (overflow to inf, subnormals kept for binary16, NaN stays NaN).
#pragma once
#include <cstdint>
#include <cstring>

namespace hr_emu_half {

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t float_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN, sign kept
    u += 0x7fffu + ((u >> 16) & 1u);                                                 // nearest even
    return (uint16_t)(u >> 16);
}

inline float bf16_to_float(uint16_t h) { return bits_f32((uint32_t)h << 16); }

inline uint16_t float_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520: inf
    const int e = (int)(a >> 23) - 127;
    if (e >= -14) {  // normal binary16
        uint32_t m = a & 0x7fffffu;
        uint32_t h = ((uint32_t)(e + 15) << 10) | (m >> 13);
        const uint32_t rest = m & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;  // carries into the exponent correctly
        return (uint16_t)(sign | h);
    }
    if (e < -25) return sign;  // below half the smallest subnormal: zero
    // Subnormal: value = m · 2^-24 with m < 1024.
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;  // 24-bit significand, value = m · 2^(e-23)
    const int shift = -e - 1;                         // (e - 23) - (-24) = e + 1 < 0: shift right by -(e+1)
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

inline float f16_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        const float v = (float)m * 5.9604644775390625e-8f;  // m · 2^-24, exact
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace hr_emu_half

struct __half {
    uint16_t x;
    __half() = default;
    __half(float f) : x(hr_emu_half::float_to_f16(f)) {}
    explicit operator float() const { return hr_emu_half::f16_to_float(x); }
};

struct __half2 {
    __half x, y;  // x in the low 16 bits
};

struct __nv_bfloat16 {
    uint16_t x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : x(hr_emu_half::float_to_bf16(f)) {}
    explicit operator float() const { return hr_emu_half::bf16_to_float(x); }
};

struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static_assert(sizeof(__half) == 2 && sizeof(__half2) == 4, "binary16 storage");
static_assert(sizeof(__nv_bfloat16) == 2 && sizeof(__nv_bfloat162) == 4, "bfloat16 storage");

inline float __half2float(__half h) { return hr_emu_half::f16_to_float(h.x); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half2 __floats2half2_rn(float lo, float hi) { return __half2{__half(lo), __half(hi)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return hr_emu_half::bf16_to_float(h.x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return __nv_bfloat162{__nv_bfloat16(lo), __nv_bfloat16(hi)}; }
