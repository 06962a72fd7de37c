#include "ops/check.h"

#include <cmath>

namespace fastnn {
namespace ops {

namespace {

const char* where(Device d) {
  return d == Device::cpu ? "a NumPy array (host memory)" : "on the GPU (CuPy)";
}

bool overlap(const Array& a, const Array& b) { return a.lo() < b.hi() && b.lo() < a.hi(); }
bool same_memory(const Array& a, const Array& b) { return a.lo() == b.lo() && a.hi() == b.hi(); }

}  // namespace

Device require_one_device(const std::vector<const Array*>& arrays) {
  const Array* first = nullptr;
  for (const Array* a : arrays) {
    if (!a->given) continue;
    if (!first) {
      first = a;
    } else if (a->device != first->device) {
      throw TypeError(a->name + " is " + where(a->device) + " but " + first->name + " is " +
                      where(first->device) + "; all arrays of one call must live on the same device");
    }
  }
  return first ? first->device : Device::cpu;
}

Device require_one_device(std::initializer_list<const Array*> arrays) {
  return require_one_device(std::vector<const Array*>(arrays));
}

DType require_float(const Array& a) {
  if (a.dtype != DType::float32 && a.dtype != DType::float64)
    throw TypeError(a.name + " must have dtype float32 or float64 (native byte order), got " + a.dtype_name);
  return a.dtype;
}

void require_layout(const Array& a) {
  if (!a.c_contiguous)
    throw ValueError(a.name + " must be C-contiguous (numpy.ascontiguousarray makes a copy)");
  if (!a.aligned) throw ValueError(a.name + " must be aligned to its dtype");
}

void require_like(const Array& a, const Array& x, const Shape& shape) {
  if (a.dtype != x.dtype)
    throw TypeError(a.name + " has dtype " + a.dtype_name + " but " + x.name + " has " + x.dtype_name +
                    "; all arrays of one call must share a dtype");
  require_layout(a);
  if (a.shape != shape)
    throw ValueError(a.name + " must have shape " + shape_str(shape) + ", got " + shape_str(a.shape));
}

void require_writeable(const Array& a) {
  if (a.readonly) throw ValueError(a.name + " is read-only; it must be writeable");
}

void expect_output(Array& out, const Array& like, const Shape& shape) {
  if (out.given) {
    require_like(out, like, shape);
    require_writeable(out);
    return;
  }
  out.shape = shape;
  out.dtype = like.dtype;
  out.dtype_name = like.dtype_name;
  out.itemsize = like.itemsize;
  out.device = like.device;
}

void expect_output(Array& out, DType dtype, const Shape& shape) {
  if (out.given) {
    if (out.dtype != dtype)
      throw TypeError(out.name + " must have dtype " + dtype_str(dtype) + ", got " + out.dtype_name);
    require_layout(out);
    if (out.shape != shape)
      throw ValueError(out.name + " must have shape " + shape_str(shape) + ", got " + shape_str(out.shape));
    require_writeable(out);
    return;
  }
  out.shape = shape;
  out.dtype = dtype;
  out.dtype_name = dtype_str(dtype);
  out.itemsize = dtype == DType::uint8 ? 1 : dtype == DType::float32 || dtype == DType::int32 ? 4 : 8;
}

void require_no_overlap(const std::vector<const Array*>& written, const std::vector<const Array*>& all,
                        const Aliases& allowed) {
  for (const Array* w : written) {
    if (!w->given || w->nbytes() == 0) continue;
    for (const Array* o : all) {
      if (o == w || !o->given || o->nbytes() == 0 || !overlap(*w, *o)) continue;
      bool ok = false;
      for (const auto& p : allowed)
        ok |= ((p.first == w->name && p.second == o->name) || (p.first == o->name && p.second == w->name)) &&
              same_memory(*w, *o);
      if (!ok)
        throw ValueError(w->name + " overlaps " + o->name + " in memory; the kernel writes " + w->name +
                         " and can't honour that aliasing");
    }
  }
}

void require_channel_axis(int64_t channel_axis) {
  if (channel_axis != 1 && channel_axis != -1)
    throw ValueError(std::string("channel_axis must be ") + kChannelAxisRule + ", got " +
                     std::to_string(channel_axis));
}

void require_positive(double v, const char* name) {
  if (!(v > 0) || std::isinf(v))
    throw ValueError(std::string(name) + " must be a finite number > 0, got " + repr(v));
}

void require_unit_interval(double v, const char* name) {
  if (!(v >= 0 && v <= 1)) throw ValueError(std::string(name) + " must be in [0, 1], got " + repr(v));
}

void require_finite(double v, const char* name) {
  if (!std::isfinite(v)) throw ValueError(std::string(name) + " must be a finite number, got " + repr(v));
}

}  // namespace ops
}  // namespace fastnn
