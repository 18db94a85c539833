#pragma once
// Tensor: a handle to shared storage seen through a shape, strides and an offset, plus
// optional autograd metadata (requires_grad, grad, grad_fn), as in PyTorch (DESIGN.md
// decision 1). Copying a Tensor copies the handle; both see the same data.
//
// The view and movement methods below (reshape, permute, narrow, to, ...) are
// differentiable; they are defined with the other ops in autograd/shape_ops.cpp.
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace minipipe {

class Node;  // autograd/node.h
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;

  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the op that made this tensor, if tracked
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage); defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked()->shape; }
  const Shape& strides() const { return checked()->strides; }
  int64_t offset() const { return checked()->offset; }
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t dim) const;  // negative dims count from the end
  int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device(); }
  bool is_contiguous() const;
  int64_t nbytes() const { return numel() * static_cast<int64_t>(dtype_size(dtype())); }

  // Pointer to the first element (storage + offset). T must match dtype().
  template <class T> T* data() const;
  void* raw_data() const;

  // --- autograd -------------------------------------------------------------------------
  bool requires_grad() const { return checked()->requires_grad; }
  // Marks a leaf as a parameter/input whose gradient should be accumulated.
  Tensor& set_requires_grad(bool requires_grad = true);
  Tensor grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // drops the accumulated gradient
  const std::shared_ptr<Node>& grad_fn() const { return checked()->grad_fn; }
  bool is_leaf() const { return grad_fn() == nullptr; }
  // Same data, no history: the result is a leaf that does not require grad.
  Tensor detach() const;
  // Backward from this tensor; `gradient` may be omitted for a one-element tensor.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  // --- differentiable views and movement (autograd/shape_ops.cpp) ------------------------
  Tensor reshape(const Shape& shape) const;  // a view when strides allow, else a copy
  Tensor view(const Shape& shape) const;     // always a view; throws if strides forbid it
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const { return narrow(dim, start, end - start); }
  Tensor expand(const Shape& shape) const;   // broadcast size-1 dims without copying
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor contiguous() const;                 // itself if already contiguous
  Tensor clone() const;                      // always a fresh contiguous copy
  Tensor to(Device device) const;            // itself if already there

  // --- element access, for tests and small programs ---------------------------------------
  float item() const;  // the value of a one-element float32 tensor
  template <class T> T item_as() const;
  float at(std::initializer_list<int64_t> index) const;  // float32 element (any device)
  template <class T> std::vector<T> to_vector() const;   // all elements in row-major order

  std::string str() const;  // readable printing, values truncated for large tensors
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  TensorImpl* checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

// Raw view over the storage of `base` (no autograd). The caller guarantees the view stays
// inside the storage; make_view checks it.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

// Throws unless the tensors share a device, naming the op and the devices.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
// Throws unless t has the dtype, naming the op and argument.
void check_dtype(const char* op, const char* argument, const Tensor& t, DType dtype);
// Throws unless t is defined, naming the op and argument.
void check_defined(const char* op, const char* argument, const Tensor& t);

}  // namespace minipipe
