// Tensor's view and movement methods (declared in tensor/tensor.h), and concat/split.
// Views share storage with their input; their backward maps the gradient back to the
// input's shape.
#include <numeric>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "autograd/shape_ops.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

Shape infer_shape(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1, unknown = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      if (unknown >= 0) throw std::invalid_argument(std::string(op) + ": only one dim may be -1 in " + shape_str(requested));
      unknown = static_cast<int64_t>(d);
    } else if (shape[d] < 0) {
      throw std::invalid_argument(std::string(op) + ": negative size in " + shape_str(requested));
    } else {
      known *= shape[d];
    }
  }
  if (unknown >= 0 && known > 0 && numel % known == 0) shape[unknown] = numel / known;
  if (shape_numel(shape) != numel || (unknown >= 0 && known == 0))
    throw std::invalid_argument(std::string(op) + ": cannot view shape " + shape_str(from) + " (" +
                                std::to_string(numel) + " elements) as " + shape_str(requested));
  return shape;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "view", this->shape());
  if (!is_contiguous())
    throw std::invalid_argument("view: a tensor of shape " + shape_str(this->shape()) + " with strides " +
                                shape_str(strides()) + " is not contiguous; use reshape() (which "
                                "copies) or call contiguous() first");
  Tensor out = make_view(*this, shape, contiguous_strides(shape), offset());
  const Shape input_shape = this->shape();
  return record("view", out, {*this}, [input_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(input_shape)};
  });
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  if (static_cast<int64_t>(order.size()) != dim())
    throw std::invalid_argument("permute: order has " + std::to_string(order.size()) +
                                " entries for a tensor of shape " + shape_str(shape()));
  Shape new_shape(dim()), new_strides(dim());
  std::vector<int64_t> inverse(dim(), -1);
  for (int64_t i = 0; i < dim(); ++i) {
    const int d = normalize_dim(order[i], dim(), "permute");
    if (inverse[d] >= 0) throw std::invalid_argument("permute: dim " + std::to_string(d) + " appears twice");
    inverse[d] = i;
    new_shape[i] = shape()[d];
    new_strides[i] = strides()[d];
  }
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  return record("permute", out, {*this}, [inverse](const Tensor& g) {
    return std::vector<Tensor>{g.permute(inverse)};
  });
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> order(dim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_dim(dim0, dim(), "transpose")], order[normalize_dim(dim1, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  const int d = normalize_dim(dim, this->dim(), "narrow");
  if (start < 0 || length < 0 || start + length > shape()[d])
    throw std::out_of_range("narrow: range [" + std::to_string(start) + ", " +
                            std::to_string(start + length) + ") is outside dim " + std::to_string(d) +
                            " of size " + std::to_string(shape()[d]) + " (shape " + shape_str(shape()) + ")");
  Shape new_shape = shape();
  new_shape[d] = length;
  Tensor out = make_view(*this, new_shape, strides(), offset() + start * strides()[d]);
  const Shape input_shape = shape();
  return record("narrow", out, {*this}, [input_shape, d, start, length](const Tensor& g) {
    Tensor dx = zeros(input_shape, DType::Float32, g.device());
    copy_(dx.narrow(d, start, length), g);
    return std::vector<Tensor>{dx};
  });
}

Tensor Tensor::expand(const Shape& target) const {
  if (target.size() < shape().size())
    throw std::invalid_argument("expand: cannot expand shape " + shape_str(shape()) + " to fewer dims " + shape_str(target));
  const size_t lead = target.size() - shape().size();
  Shape new_strides(target.size(), 0);
  for (size_t d = 0; d < shape().size(); ++d) {
    if (shape()[d] == target[lead + d]) new_strides[lead + d] = strides()[d];
    else if (shape()[d] != 1)
      throw std::invalid_argument("expand: dim " + std::to_string(d) + " of shape " + shape_str(shape()) +
                                  " has size " + std::to_string(shape()[d]) + " and cannot become " +
                                  std::to_string(target[lead + d]) + " in " + shape_str(target) +
                                  " (only size-1 dims expand)");
  }
  Tensor out = make_view(*this, target, new_strides, offset());
  const Shape input_shape = shape();
  return record("expand", out, {*this}, [input_shape](const Tensor& g) {
    return std::vector<Tensor>{detail::sum_to_shape(g, input_shape)};
  });
}

Tensor Tensor::squeeze(int64_t dim) const {
  const int d = normalize_dim(dim, this->dim(), "squeeze");
  if (shape()[d] != 1)
    throw std::invalid_argument("squeeze: dim " + std::to_string(d) + " of shape " + shape_str(shape()) + " has size " +
                                std::to_string(shape()[d]) + ", not 1");
  Shape new_shape = shape(), new_strides = strides();
  new_shape.erase(new_shape.begin() + d);
  new_strides.erase(new_strides.begin() + d);
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  return record("squeeze", out, {*this}, [d](const Tensor& g) { return std::vector<Tensor>{g.unsqueeze(d)}; });
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  const int d = normalize_dim(dim, this->dim() + 1, "unsqueeze");
  Shape new_shape = shape(), new_strides = strides();
  const int64_t stride = d < this->dim() ? strides()[d] * shape()[d] : 1;
  new_shape.insert(new_shape.begin() + d, 1);
  new_strides.insert(new_strides.begin() + d, stride);
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  return record("unsqueeze", out, {*this}, [d](const Tensor& g) { return std::vector<Tensor>{g.squeeze(d)}; });
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_(out, *this);
  return record("clone", out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(Device target) const {
  if (device() == target) return *this;
  Tensor out = empty(shape(), dtype(), target);  // throws for a device this build lacks
  copy_(out, *this);
  const Device source = device();
  return record("to", out, {*this}, [source](const Tensor& g) { return std::vector<Tensor>{g.to(source)}; });
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw std::invalid_argument("concat: no tensors given");
  const Tensor& first = tensors[0];
  const int d = normalize_dim(dim, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_defined("concat", "a tensor", t);
    check_same_device("concat", first, t);
    check_dtype("concat", "every tensor", t, first.dtype());
    Shape expected = first.shape(), got = t.shape();
    if (got.size() == expected.size()) expected[d] = got[d];
    if (got != expected)
      throw std::invalid_argument("concat: tensor " + std::to_string(i) + " has shape " + shape_str(got) +
                                  " but tensor 0 has shape " + shape_str(first.shape()) +
                                  "; all dims except dim " + std::to_string(d) + " must match");
    out_shape[d] += got[d];
    sizes.push_back(got[d]);
  }
  Tensor out = empty(out_shape, first.dtype(), first.device());
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    copy_(make_view(out, t.shape(), out.strides(), start * out.strides()[d]), t);
    start += t.shape()[d];
  }
  return record("concat", out, tensors, [sizes, d](const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t offset = 0;
    for (int64_t size : sizes) {
      grads.push_back(g.narrow(d, offset, size));
      offset += size;
    }
    return grads;
  });
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int d = normalize_dim(dim, x.dim(), "split");
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  if (total != x.shape()[d])
    throw std::invalid_argument("split: sizes add up to " + std::to_string(total) + " but dim " +
                                std::to_string(d) + " of shape " + shape_str(x.shape()) + " has " +
                                std::to_string(x.shape()[d]));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t size : sizes) {
    parts.push_back(x.narrow(d, start, size));
    start += size;
  }
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  if (chunks <= 0) throw std::invalid_argument("chunk: chunks must be positive, got " + std::to_string(chunks));
  const int64_t length = x.size(dim);
  const int64_t step = (length + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < length; start += step) sizes.push_back(std::min(step, length - start));
  return split(x, sizes, dim);
}

}  // namespace minipipe
