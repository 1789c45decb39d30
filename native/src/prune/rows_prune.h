// Structured pruning of whole output units by norm; rows_prune_f32 (umbra_kernels.h) is the entry point.
#pragma once

#include "umbra_kernels.h"
