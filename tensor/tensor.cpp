#include "tensor/tensor.h"

#include <cstdio>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "kernels/cpu/elementwise.h"
#include "tensor/factories.h"

namespace minipipe {

TensorImpl* Tensor::checked() const {
  if (!impl_)
    throw std::logic_error("use of an undefined Tensor (default-constructed, or a gradient "
                           "that was never computed); check defined() first");
  return impl_.get();
}

int64_t Tensor::size(int64_t dim) const {
  return shape()[normalize_dim(dim, this->dim(), "Tensor::size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] != 1 && strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  TensorImpl* impl = checked();
  return static_cast<char*>(impl->storage->data()) +
         impl->offset * static_cast<int64_t>(dtype_size(impl->dtype));
}

template <class T> T* Tensor::data() const {
  if (dtype() != dtype_of<T>())
    throw std::invalid_argument(std::string("Tensor::data: asked for ") +
                                dtype_name(dtype_of<T>()) + " but the tensor holds " +
                                dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template int32_t* Tensor::data<int32_t>() const;

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  if (!is_leaf())
    throw std::invalid_argument("set_requires_grad: only leaf tensors can be marked; this one "
                                "was computed by an op (call detach() first)");
  if (requires_grad && dtype() != DType::Float32)
    throw std::invalid_argument(std::string("set_requires_grad: only float32 tensors can "
                                            "require grad, this one is ") + dtype_name(dtype()));
  checked()->requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(checked()->grad); }
void Tensor::set_grad(const Tensor& grad) const { checked()->grad = grad.impl_; }
void Tensor::zero_grad() const { checked()->grad.reset(); }

Tensor Tensor::detach() const {
  TensorImpl* impl = checked();
  auto out = std::make_shared<TensorImpl>();
  out->storage = impl->storage;
  out->shape = impl->shape;
  out->strides = impl->strides;
  out->offset = impl->offset;
  out->dtype = impl->dtype;
  return Tensor(out);
}

float Tensor::item() const { return item_as<float>(); }

template <class T> T Tensor::item_as() const {
  if (numel() != 1)
    throw std::invalid_argument("item: the tensor has " + std::to_string(numel()) +
                                " elements (shape " + shape_str(shape()) + "); item() needs exactly 1");
  return to_vector<T>()[0];
}
template float Tensor::item_as<float>() const;
template int32_t Tensor::item_as<int32_t>() const;

float Tensor::at(std::initializer_list<int64_t> index) const {
  if (static_cast<int64_t>(index.size()) != dim())
    throw std::invalid_argument("at: got " + std::to_string(index.size()) +
                                " indices for a tensor of shape " + shape_str(shape()));
  const Tensor host = to(Device::cpu());
  int64_t offset = 0, d = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape()[d])
      throw std::out_of_range("at: index " + std::to_string(i) + " is out of range for dim " +
                              std::to_string(d) + " of shape " + shape_str(shape()));
    offset += i * host.strides()[d++];
  }
  return host.data<float>()[offset];
}

template <class T> std::vector<T> Tensor::to_vector() const {
  const Tensor host = to(Device::cpu()).contiguous();
  const T* begin = host.data<T>();
  return std::vector<T>(begin, begin + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;

namespace {

// Prints nested brackets; when a dim is longer than 2 * edge, only its first and last
// `edge` entries are shown, as PyTorch does.
void print_values(std::ostream& out, const Tensor& t, const std::vector<double>& values,
                  int64_t dim, int64_t offset, int64_t edge, int indent) {
  if (t.dim() == 0) {
    out << values[0];
    return;
  }
  const int64_t n = t.shape()[dim];
  const int64_t stride = contiguous_strides(t.shape())[dim];
  const bool summarise = edge > 0 && n > 2 * edge;
  out << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && i == edge) {
      out << "...";
      i = n - edge - 1;
      out << (dim + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
      continue;
    }
    if (dim + 1 == t.dim()) {
      char buffer[32];
      if (t.dtype() == DType::Int32) std::snprintf(buffer, sizeof buffer, "%lld", static_cast<long long>(values[offset + i]));
      else std::snprintf(buffer, sizeof buffer, "%.4f", values[offset + i]);
      out << buffer;
    } else {
      print_values(out, t, values, dim + 1, offset + i * stride, edge, indent + 1);
    }
    if (i + 1 < n) out << (dim + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  out << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> values;
  if (dtype() == DType::Float32) for (float v : to_vector<float>()) values.push_back(v);
  else if (dtype() == DType::Int32) for (int32_t v : to_vector<int32_t>()) values.push_back(v);
  std::ostringstream out;
  out << "tensor(";
  if (dtype() == DType::BFloat16) out << "<bfloat16 values>";
  else print_values(out, *this, values, 0, 0, numel() > 1000 ? 3 : 0, 7);
  out << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
      << ", device=" << device().str();
  if (requires_grad()) out << ", requires_grad=true";
  out << ')';
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  if (shape.size() != strides.size() || shape.size() > static_cast<size_t>(kernels::cpu::kMaxDims))
    throw std::invalid_argument("make_view: shape " + shape_str(shape) + " and strides " +
                                shape_str(strides) + " must have the same length, at most " +
                                std::to_string(kernels::cpu::kMaxDims));
  // The furthest element the view can reach must lie inside the storage.
  int64_t last = offset;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) throw std::invalid_argument("make_view: negative size in " + shape_str(shape));
    if (shape[d] == 0) last = offset;
    else last += (shape[d] - 1) * strides[d];
  }
  const int64_t capacity = static_cast<int64_t>(base.impl()->storage->bytes() / dtype_size(base.dtype()));
  if (offset < 0 || (shape_numel(shape) > 0 && last >= capacity))
    throw std::out_of_range("make_view: a view of shape " + shape_str(shape) + " at offset " +
                            std::to_string(offset) + " reaches past the storage of " +
                            std::to_string(capacity) + " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    throw std::invalid_argument(std::string(op) + ": tensors are on different devices (" +
                                a.device().str() + " and " + b.device().str() +
                                "); move one with .to(device)");
}

void check_dtype(const char* op, const char* argument, const Tensor& t, DType dtype) {
  if (t.dtype() != dtype)
    throw std::invalid_argument(std::string(op) + ": " + argument + " must be " +
                                dtype_name(dtype) + ", got " + dtype_name(t.dtype()) +
                                " (shape " + shape_str(t.shape()) + ")");
}

void check_defined(const char* op, const char* argument, const Tensor& t) {
  if (!t.defined())
    throw std::invalid_argument(std::string(op) + ": " + argument + " is an undefined tensor");
}

}  // namespace minipipe
