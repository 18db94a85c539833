#include "kernels/cpu/gather.h"

#include <cstring>

#include "kernels/cpu/threads.h"
#include "kernels/philox.h"

namespace minipipe::kernels::cpu {

void embedding_forward(const float* weight, const int32_t* indices, float* out, int64_t count,
                       int64_t dim) {
  parallel_for(count, 2 * dim, [&](int64_t i) {
    std::memcpy(out + i * dim, weight + static_cast<int64_t>(indices[i]) * dim,
                static_cast<size_t>(dim) * sizeof(float));
  });
}

void embedding_backward(const float* dout, const int32_t* indices, float* dweight, int64_t count,
                        int64_t dim) {
  for (int64_t i = 0; i < count; ++i) {
    float* row = dweight + static_cast<int64_t>(indices[i]) * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += dout[i * dim + j];
  }
}

namespace {
void dropout_on_one_thread(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream,
                           int64_t element_offset) {
  const float keep_scale = 1.0f / (1.0f - p);
  // Element e uses word e % 4 of Philox block e / 4 (philox_uniform's numbering). Whole
  // blocks go through a plain loop the compiler can vectorise across blocks; the partial
  // blocks at either end are done one element at a time.
  auto one = [&](int64_t i) {
    y[i] = philox_uniform(seed, stream, static_cast<uint64_t>(element_offset + i)) >= p ? x[i] * keep_scale : 0.0f;
  };
  int64_t i = 0;
  for (; i < n && (element_offset + i) % 4 != 0; ++i) one(i);
  const int64_t blocks = (n - i) / 4;
  const uint64_t first_block = static_cast<uint64_t>(element_offset + i) / 4;
  const float* xb = x + i;
  float* yb = y + i;
  for (int64_t b = 0; b < blocks; ++b) {
    const Philox4 block = philox4x32(seed, stream, first_block + static_cast<uint64_t>(b));
    for (int w = 0; w < 4; ++w)
      yb[4 * b + w] = uniform_from_bits(block.v[w]) >= p ? xb[4 * b + w] * keep_scale : 0.0f;
  }
  for (i += 4 * blocks; i < n; ++i) one(i);
}
}  // namespace

// Each element's mask depends only on its own number, so threads may take any range.
void dropout(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream,
             int64_t element_offset) {
  parallel_ranges(n, 4, [&](int64_t begin, int64_t end) {
    dropout_on_one_thread(x + begin, y + begin, end - begin, p, seed, stream, element_offset + begin);
  });
}

void causal_mask(const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill) {
  parallel_for(batch * queries, 2 * keys, [&](int64_t bq) {  // bq = b * queries + q
    const int64_t row = bq * keys;
    const int64_t visible = query_offset + bq % queries + 1;  // keys [0, visible) are seen
    for (int64_t k = 0; k < keys; ++k) out[row + k] = k < visible ? in[row + k] : fill;
  });
}

}  // namespace minipipe::kernels::cpu
