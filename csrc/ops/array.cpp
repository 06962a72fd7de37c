#include "ops/array.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace fastnn {
namespace ops {

DType dtype_of(char kind, int64_t itemsize, bool native_byte_order) {
  if (!native_byte_order) return DType::other;
  if (kind == 'f' && itemsize == 4) return DType::float32;
  if (kind == 'f' && itemsize == 8) return DType::float64;
  if (kind == 'u' && itemsize == 1) return DType::uint8;
  if (kind == 'i' && itemsize == 4) return DType::int32;
  if (kind == 'i' && itemsize == 8) return DType::int64;
  return DType::other;
}

std::string dtype_str(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::uint8: return "uint8";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::other: break;
  }
  return "other";
}

namespace {

bool little_endian() {
  const uint16_t one = 1;
  return *reinterpret_cast<const uint8_t*>(&one) == 1;
}

// A typestr's dtype name as NumPy prints the same dtype: "float16" for "<f2" on a
// little-endian machine, the typestr itself for the rest (">f4").
std::string typestr_name(const std::string& t, char kind, int64_t itemsize, bool native) {
  if (!native) return t;
  const char* names = nullptr;
  switch (kind) {
    case 'f': names = "float"; break;
    case 'i': names = "int"; break;
    case 'u': names = "uint"; break;
    case 'c': names = "complex"; break;
    case 'b': return itemsize == 1 ? "bool" : t;
    default: return t;
  }
  return std::string(names) + std::to_string(8 * itemsize);
}

[[noreturn]] void malformed(const std::string& name, const std::string& what) {
  throw ValueError(name + " has a malformed __cuda_array_interface__: " + what);
}

}  // namespace

Array view_of_cuda_interface(const CudaInterface& cai, const std::string& name) {
  if (cai.version != 2 && cai.version != 3)
    throw ValueError(name + " has __cuda_array_interface__ version " + std::to_string(cai.version) +
                     "; fastnn reads versions 2 and 3");
  // typestr: byte order ('<', '>', '|', '='), kind, item size in bytes.
  const std::string& t = cai.typestr;
  if (t.size() < 3 || std::string("<>|=").find(t[0]) == std::string::npos)
    malformed(name, "typestr '" + t + "'");
  char* end = nullptr;
  const long itemsize = std::strtol(t.c_str() + 2, &end, 10);
  if (*end != '\0' || itemsize <= 0) malformed(name, "typestr '" + t + "'");
  const bool native = t[0] == '|' || t[0] == '=' || t[0] == (little_endian() ? '<' : '>');
  for (int64_t d : cai.shape)
    if (d < 0) malformed(name, "shape " + shape_str(cai.shape));
  if (cai.has_mask)
    throw TypeError(name + " has a mask (__cuda_array_interface__['mask']); fastnn would ignore it, "
                    "so masked device arrays are refused");
  if (cai.has_stream && cai.stream == 0)
    malformed(name, "stream 0 (the interface forbids it: pass 1 for the legacy default stream)");

  Array a;
  a.name = name;
  a.given = true;
  a.data = reinterpret_cast<void*>(cai.data);
  a.shape = cai.shape;
  a.itemsize = itemsize;
  a.dtype = dtype_of(t[1], itemsize, native);
  a.dtype_name = typestr_name(t, t[1], itemsize, native);
  a.readonly = cai.readonly;
  a.device = Device::cuda;
  a.stream = cai.has_stream ? cai.stream : 0;
  a.aligned = a.size() == 0 || cai.data % uintptr_t(itemsize) == 0;
  if (cai.has_strides) {
    if (cai.strides.size() != cai.shape.size())
      malformed(name, "strides " + shape_str(cai.strides) + " for shape " + shape_str(cai.shape));
    // C order: each axis of extent > 1 steps over the axes after it (NumPy's rule; an
    // empty array is contiguous whatever its strides).
    int64_t step = itemsize;
    bool contiguous = true;
    for (size_t k = cai.shape.size(); k-- > 0;) {
      if (cai.shape[k] != 1 && cai.strides[k] != step) contiguous = false;
      step *= cai.shape[k];
    }
    if (!contiguous && a.size() != 0)
      throw ValueError(name + " must be C-contiguous, got strides " + shape_str(cai.strides) +
                       " for shape " + shape_str(cai.shape) + " of " + a.dtype_name +
                       " (cupy.ascontiguousarray makes a copy)");
  }
  return a;
}

std::string repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // The shortest digits that round-trip, then Python's layout: positional for
  // -4 < exponent < 16, else d.ddde+XX (at least two exponent digits).
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  const size_t e = s.find('e');
  std::string sign, mantissa = s.substr(0, e);
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  const int exponent = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  const int point = exponent + 1;  // digits[0:point] are before the decimal point
  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    const int mag = exponent < 0 ? -exponent : exponent;
    return out + "e" + (exponent < 0 ? "-" : "+") + (mag < 10 ? "0" : "") + std::to_string(mag);
  }
  if (point <= 0) return sign + "0." + std::string(size_t(-point), '0') + digits;
  if (size_t(point) >= digits.size()) return sign + digits + std::string(point - digits.size(), '0') + ".0";
  return sign + digits.substr(0, point) + "." + digits.substr(point);
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace ops
}  // namespace fastnn
