// Shared by every translation unit, CPU and CUDA.
#pragma once

// Kernel sources are compiled once per instruction set with FASTNN_ISA_NS set to the
// level's name (baseline, avx2, avx512). Everything they and the math headers define
// lives in the inline namespace fastnn::<level>, so the copies never share a symbol and
// the linker can't hand AVX-512 code to a baseline caller.
#ifndef FASTNN_ISA_NS
#define FASTNN_ISA_NS generic
#endif
#define FASTNN_NAMESPACE_BEGIN namespace fastnn { inline namespace FASTNN_ISA_NS {
#define FASTNN_NAMESPACE_END } }
// The CPU kernels' own helpers: fastnn::cpu::<level>.
#define FASTNN_CPU_NAMESPACE_BEGIN namespace fastnn { namespace cpu { inline namespace FASTNN_ISA_NS {
#define FASTNN_CPU_NAMESPACE_END } } }

// FASTNN_HD marks math that both backends call.
#if defined(__CUDACC__)
#define FASTNN_HD __host__ __device__ __forceinline__
#else
#define FASTNN_HD inline
#endif
