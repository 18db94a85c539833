#include "kernels/cpu/gather.h"

#include <cstring>

#include "kernels/philox.h"

namespace minipipe::kernels::cpu {

void embedding_forward(const float* weight, const int32_t* indices, float* out, int64_t count,
                       int64_t dim) {
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(out + i * dim, weight + static_cast<int64_t>(indices[i]) * dim,
                static_cast<size_t>(dim) * sizeof(float));
}

void embedding_backward(const float* dout, const int32_t* indices, float* dweight, int64_t count,
                        int64_t dim) {
  for (int64_t i = 0; i < count; ++i) {
    float* row = dweight + static_cast<int64_t>(indices[i]) * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += dout[i * dim + j];
  }
}

void dropout(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream,
             int64_t element_offset) {
  const float keep_scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) {
    const float u = philox_uniform(seed, stream, static_cast<uint64_t>(element_offset + i));
    y[i] = u >= p ? x[i] * keep_scale : 0.0f;
  }
}

void causal_mask(const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t q = 0; q < queries; ++q) {
      const int64_t row = (b * queries + q) * keys;
      const int64_t visible = query_offset + q + 1;  // keys [0, visible) are seen
      for (int64_t k = 0; k < keys; ++k) out[row + k] = k < visible ? in[row + k] : fill;
    }
}

}  // namespace minipipe::kernels::cpu
