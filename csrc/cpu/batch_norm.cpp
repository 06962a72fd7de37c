// Batch norm forward and backward on the CPU, compiled once per instruction set
// (CMakeLists.txt). The formulas live in fastnn/bn_math.h.
//
// Two layouts of x, both C-contiguous (BnShape, ops/launch.h):
//  planes (N, C, S), S > 1: channel c is N planes of S contiguous values. Statistics
//         are taken per piece (part of a plane, or a few small planes) and merged per
//         channel in a fixed order.
//  rows   (M, C): channel c is column c. Work items are blocks of rows (and, for wide
//         C, tiles of columns); vectors run along the columns.
// Every reduction is split into pieces fixed by the shape and merged in a fixed order,
// so the bits do not depend on the thread count or the instruction set.
//
// This file picks the layout; batch_norm_planes.cpp and batch_norm_rows.cpp hold them,
// batch_norm_lanes.h what they share.
#include "cpu/batch_norm_lanes.h"

FASTNN_CPU_NAMESPACE_BEGIN
namespace {

template <class T> void forward_train(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_train(a) : planes_forward_train(a);
}
template <class T> void forward_eval(const BnForwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_forward_eval(a) : planes_forward_eval(a);
}
template <class T> void backward_train(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_train(a) : planes_backward_train(a);
}
template <class T> void backward_eval(const BnBackwardArgs<T>& a) {
  a.shape.inner == 1 ? rows_backward_eval(a) : planes_backward_eval(a);
}

template <class T> BatchNormKernels<T> batch_norm_kernels() {
  return {&forward_train<T>, &forward_eval<T>, &backward_train<T>, &backward_eval<T>};
}

}  // namespace

void fill_batch_norm(KernelTable& table) {
  table.batch_norm.f32 = batch_norm_kernels<float>();
  table.batch_norm.f64 = batch_norm_kernels<double>();
}

FASTNN_CPU_NAMESPACE_END
