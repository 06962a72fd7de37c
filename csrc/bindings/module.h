// Each kernel family binds its functions into the _cpu module from its own file
// (csrc/bindings/<family>.cpp); cpu_module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace fastnn {
namespace bind {

void bind_batch_norm(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_stream(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_channel_activations(pybind11::module_& m);
void bind_activations(pybind11::module_& m);

}  // namespace bind
}  // namespace fastnn
