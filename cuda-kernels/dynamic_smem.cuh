// headroute: the declaration of a kernel's dynamic shared memory (the bytes given at launch), 16-byte
// aligned. The CPU emulator (native/emu) compiles the kernels as C++ and supplies its own buffer.
#pragma once

#ifdef HR_EMULATION
#define HR_DYNAMIC_SMEM(name) HR_EMU_DYNAMIC_SMEM(name)
#else
#define HR_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif
