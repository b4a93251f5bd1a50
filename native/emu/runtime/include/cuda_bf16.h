// headroute CPU emulator: stands in for CUDA's header (see hr_emu_half.h).
#pragma once
#include "hr_emu_half.h"
