// The kernel families, one line each: X(name, table type). This one list makes the CPU
// kernel table (cpu/kernels.h) and fills it once per instruction set (cpu/dispatch.cpp),
// registers the Python functions (bindings/cpu_module.cpp) and names the sources CMake
// compiles (CMakeLists.txt reads the X(...) lines below):
//   csrc/ops/<name>.h, .cpp    the launch arguments, the kernels a backend provides, the checks
//   csrc/cpu/<name>.cpp        the CPU kernels, compiled once per instruction set, with
//   csrc/cpu/<name>_*.cpp      any further parts of them
//   csrc/bindings/<name>.cpp   the Python functions (bind_<name>)
// The math both backends share lives in csrc/include/fastnn/. A new family is a line
// here, its include below, and those files.
#pragma once

#include "ops/activations.h"
#include "ops/batch_norm.h"
#include "ops/channel_activations.h"
#include "ops/dropout.h"
#include "ops/optim.h"
#include "ops/spatial.h"
#include "ops/stream.h"

#define FASTNN_FAMILIES(X)                         \
  X(batch_norm, BatchNormTable)                    \
  X(activations, ActivationTable)                  \
  X(channel_activations, ChannelActivationTable)   \
  X(dropout, DropoutKernels)                       \
  X(optim, OptimTable)                             \
  X(spatial, SpatialTable)                         \
  X(stream, StreamKernels)                         \
  /* (each line ends in a backslash) */
