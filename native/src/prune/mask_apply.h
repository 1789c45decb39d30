// Zeroes the weights a LayerCut selects; mask_apply_f32 (umbra_kernels.h) is the entry point.
#pragma once

#include "umbra_kernels.h"
