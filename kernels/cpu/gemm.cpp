#include "kernels/cpu/gemm.h"

#include <atomic>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/threads.h"

// Eigen must not start threads of its own: kernel_threads() decides (threads.h).
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace minipipe::kernels::cpu {

namespace {
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

// Eigen picks its GEMM kernel from the expression; a transposed Map costs no copy.
template <class OpA, class OpB>
void multiply(const OpA& a, const OpB& b, float alpha, float beta, Map& c) {
  if (beta == 0.0f) {
    c.noalias() = alpha * (a * b);
  } else {
    if (beta != 1.0f) c *= beta;
    c.noalias() += alpha * (a * b);
  }
}

// What C's product is added to: scale * addend, row r of the addend at data + r * ld, so
// that C itself (ld = ldc) and a bias repeated on every row (ld = 0) are the same thing.
// scale == 0 never reads it, so that uninitialised output memory cannot turn into NaN.
struct Addend {
  const float* data;
  int64_t ld;
  float scale;
  Addend at(int64_t row, int64_t col) const { return {data + row * ld + col, ld, scale}; }
};

// A strided view of op(X): element (row, col) is data[row * row_stride + col * col_stride],
// so that a transposed operand is the same view with the strides swapped. One of the two
// strides is 1 (X is row-major).
struct StridedMatrix {
  const float* data;
  int64_t row_stride, col_stride;
};

#if defined(__AVX512F__)
// A BLIS-style GEMM (Goto and van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication", 2008) for AVX-512: Eigen reaches 65-75% of the speed of OpenBLAS on
// the skinny products of a small Transformer, and GEMM is three quarters of its step.
//
// The micro-kernel keeps a TileRows x kTileCols tile of C in vector registers (24 of the 32
// for 12 rows) and, for each step along k, adds the outer product of a column of packed A
// (TileRows values, one broadcast each) and a row of packed B (two vectors). Packing puts
// both operands in the order the micro-kernel reads them, zero-padded to whole tiles, so
// that transposes and ragged edges cost nothing inside the loop. The packed A block
// (kRowBlock x kDepthBlock, 192 KB) stays in L2 while the B micro-panels (kDepthBlock x
// kTileCols) stream past it. The sizes were measured, not derived: on the development machine
// (Zen 5: 48 KB L1, 1 MB L2) depth 512 and 768 columns, with C prefetched, ran the twelve GEMM
// shapes of a gpt-512 step at 188 GFLOP/s against 166 for depth 256 and 2048 columns (medians
// of 9 alternating runs; the micro-kernel alone, in L1, reaches 210).
constexpr int64_t kTileCols = 2 * kLanes;  // two vectors of sixteen floats (simd.h)
constexpr int64_t kDepthBlock = 512, kRowBlock = 96, kColumnBlock = 768;

// The mask of lanes [0, count), count <= 16.
inline __mmask16 first_lanes(int64_t count) { return static_cast<__mmask16>((1u << count) - 1); }

// pack_across reads sixteen rows at once, a cache line of each per block: too many streams
// for the hardware prefetcher to run ahead of, so each row's line four blocks on is asked
// for (distances of 2 to 16 lines did about the same; none at all was 2-3% slower over the
// GEMM shapes of a gpt-512 step, with caches flushed between calls).
constexpr int64_t kPackAhead = 64;

// out[p * width + r] = src[r * stride + p] for r < rows and p < depth, 0 for rows <= r < width:
// rows that run along p, packed p-major. 16 x 16 blocks go through registers (loads along p,
// simd.h's transpose16, stores along r); masks take the ragged edges and the zero padding.
void pack_across(const float* src, int64_t stride, int64_t rows, int64_t depth, float* out, int64_t width) {
  Ints16 v[kLanes];
  for (int64_t r0 = 0; r0 < width; r0 += 16) {
    const __mmask16 store = first_lanes(std::min<int64_t>(16, width - r0));
    for (int64_t p0 = 0; p0 < depth; p0 += 16) {
      const int64_t steps = std::min<int64_t>(16, depth - p0);
      for (int64_t r = 0; r < 16; ++r) {
        if (r0 + r >= rows) {
          v[r] = Ints16{};
          continue;
        }
        const float* line = src + (r0 + r) * stride + p0;
        _mm_prefetch(reinterpret_cast<const char*>(line + kPackAhead), _MM_HINT_T0);
        v[r] = reinterpret_cast<Ints16>(_mm512_maskz_loadu_ps(first_lanes(steps), line));
      }
      transpose16(v);
      for (int64_t q = 0; q < steps; ++q)
        _mm512_mask_storeu_ps(out + (p0 + q) * width + r0, store, reinterpret_cast<__m512>(v[q]));
    }
  }
}

// How many source rows ahead pack_along asks for: its reads step by a whole row (a
// transposed operand, e.g. dY in dW = dY^T X), a stride the hardware prefetcher did not
// follow. 8 rows: the dW shapes of a gpt-512 step ran 4-5% faster (4 to 32 alike).
constexpr int64_t kAlongAhead = 8;

// Every panel of a block at once when the block's rows run along the source's rows:
// panel[c / width][p * width + c % width] = src[p * stride + c] for c < cols and p < depth,
// 0 for cols <= c < the panels' end. Each source row is read once, left to right, into
// every panel (panel by panel, each pass took a 48-byte piece of every row, and the next
// pass the piece beside it: 2% slower again).
void pack_along(const float* src, int64_t stride, int64_t cols, int64_t depth, float* out, int64_t width) {
  const int64_t padded = (cols + width - 1) / width * width;
  for (int64_t p = 0; p < depth; ++p) {
    const float* row = src + p * stride;
    const float* ahead = row + kAlongAhead * stride;  // only prefetched: past the end is harmless
    for (int64_t c = 0; c < cols; c += 16) _mm_prefetch(reinterpret_cast<const char*>(ahead + c), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ahead + cols - 1), _MM_HINT_T0);
    for (int64_t c0 = 0; c0 < padded; c0 += width) {
      float* panel_row = out + c0 * depth + p * width;
      for (int64_t c = 0; c < width; c += 16) {
        const __mmask16 load = first_lanes(std::clamp<int64_t>(cols - c0 - c, 0, 16));
        _mm512_mask_storeu_ps(panel_row + c, first_lanes(std::min<int64_t>(16, width - c)),
                              _mm512_maskz_loadu_ps(load, row + c0 + c));
      }
    }
  }
}

// Packs rows [row0, row0 + rows) x depth [p0, p0 + depth) of m as consecutive `width`-tall
// panels, each laid out depth-major: panel[p * width + r], zero-padded to whole panels.
// Packed A is m = op(A) in TileRows panels; packed B is m = op(B)^T in kTileCols panels.
void pack_panels(const StridedMatrix& m, int64_t row0, int64_t rows, int64_t p0, int64_t depth, int64_t width,
                 float* packed) {
  const float* first = m.data + row0 * m.row_stride + p0 * m.col_stride;
  if (m.col_stride != 1) {  // row_stride == 1
    pack_along(first, m.col_stride, rows, depth, packed, width);
    return;
  }
  for (int64_t i = 0; i < rows; i += width, packed += depth * width)
    pack_across(first + i * m.row_stride, m.row_stride, std::min(width, rows - i), depth, packed, width);
}

template <int64_t TileRows>
using Tile = Floats16[TileRows][2];

// tile = A panel x B panel over `depth` steps (both packed, so reads are sequential).
template <int64_t TileRows>
void multiply_tile(int64_t depth, const float* a, const float* b, Tile<TileRows>& tile) {
  for (auto& row : tile) row[0] = row[1] = Floats16{};
  for (int64_t p = 0; p < depth; ++p, a += TileRows, b += kTileCols) {
    const Floats16 b0 = load16(b), b1 = load16(b + kLanes);
#pragma GCC unroll 12
    for (int64_t r = 0; r < TileRows; ++r) {
      const Floats16 a_r = _mm512_set1_ps(a[r]);  // (Floats16{} + a[r] costs an add: -0.0f)
      tile[r][0] += a_r * b0;
      tile[r][1] += a_r * b1;
    }
  }
}

// C[rows, cols] = alpha * tile + addend.scale * addend.
template <int64_t TileRows>
void store_tile(const Tile<TileRows>& tile, int64_t rows, int64_t cols, float alpha, const Addend& addend, float* c,
                int64_t ldc) {
  if (cols == kTileCols) {  // whole rows: vector loads and stores
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t half = 0; half < 2; ++half) {
        float* out = c + r * ldc + half * kLanes;
        Floats16 value = alpha * tile[r][half];
        if (addend.scale != 0.0f) value += addend.scale * load16(addend.data + r * addend.ld + half * kLanes);
        store16(out, value);
      }
    }
    return;
  }
  float values[TileRows][kTileCols];
  __builtin_memcpy(values, tile, sizeof(values));
  for (int64_t r = 0; r < rows; ++r) {
    float* out = c + r * ldc;
    if (addend.scale == 0.0f) {
      for (int64_t j = 0; j < cols; ++j) out[j] = alpha * values[r][j];
    } else {
      const float* old = addend.data + r * addend.ld;
      for (int64_t j = 0; j < cols; ++j) out[j] = alpha * values[r][j] + addend.scale * old[j];
    }
  }
}

void prefetch_tile(const float* c, int64_t rows, int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r) {
    __builtin_prefetch(c + r * ldc);
    __builtin_prefetch(c + r * ldc + kLanes);
  }
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

constexpr int64_t kPackedA = kRowBlock * kDepthBlock;
constexpr int64_t kPackedB = kDepthBlock * ((kColumnBlock + kTileCols - 1) / kTileCols) * kTileCols;

// Per-thread packing buffers (A block, then B block: 1.8 MB, outside the tensor allocator's
// counts), 64-byte aligned for the vector loads.
float* packing_buffer() {
  thread_local std::unique_ptr<float, FreeDeleter> buffer;
  if (!buffer) {
    buffer.reset(static_cast<float*>(std::aligned_alloc(64, (kPackedA + kPackedB) * sizeof(float))));
    if (!buffer) throw std::bad_alloc();
  }
  return buffer.get();
}

template <int64_t TileRows>
void packed_gemm(int64_t m, int64_t n, int64_t k, float alpha, const StridedMatrix& a,
                 const StridedMatrix& b, const Addend& addend, float* c, int64_t ldc) {
  static_assert(kRowBlock % TileRows == 0);
  float* packed_a = packing_buffer();
  float* packed_b = packed_a + kPackedA;
  Tile<TileRows> tile;
  for (int64_t j0 = 0; j0 < n; j0 += kColumnBlock) {
    const int64_t cols = std::min(kColumnBlock, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
      const int64_t depth = std::min(kDepthBlock, k - p0);
      const Addend block_addend = p0 > 0 ? Addend{c, ldc, 1.0f} : addend;  // later depth blocks accumulate
      pack_panels(StridedMatrix{b.data, b.col_stride, b.row_stride}, j0, cols, p0, depth, kTileCols, packed_b);
      for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, m - i0);
        pack_panels(a, i0, rows, p0, depth, TileRows, packed_a);
        for (int64_t j = 0; j < cols; j += kTileCols) {
          for (int64_t i = 0; i < rows; i += TileRows) {
            const int64_t tile_rows = std::min(TileRows, rows - i);
            const Addend tile_addend = block_addend.at(i0 + i, j0 + j);
            // The tile this product will add to is fetched while it multiplies (C is not
            // in cache: a row band of it is visited once per depth block). A bias (ld = 0)
            // is two lines that stay in cache: nothing to fetch.
            if (tile_addend.scale != 0.0f && tile_addend.ld != 0)
              prefetch_tile(tile_addend.data, tile_rows, tile_addend.ld);
            multiply_tile<TileRows>(depth, packed_a + i * depth, packed_b + j * depth, tile);
            store_tile<TileRows>(tile, tile_rows, std::min(kTileCols, cols - j), alpha, tile_addend,
                                 c + (i0 + i) * ldc + j0 + j, ldc);
          }
        }
      }
    }
  }
}

// 12-row tiles reuse each B vector most; 8-row tiles waste less on a few rows (16 or 32
// output channels of a convolution would leave a 12-row tile a third empty).
void packed_gemm(int64_t m, int64_t n, int64_t k, float alpha, const StridedMatrix& a,
                 const StridedMatrix& b, const Addend& addend, float* c, int64_t ldc) {
  const int64_t padded_12 = (m + 11) / 12 * 12, padded_8 = (m + 7) / 8 * 8;
  if (padded_8 * 20 < padded_12 * 19) packed_gemm<8>(m, n, k, alpha, a, b, addend, c, ldc);
  else packed_gemm<12>(m, n, k, alpha, a, b, addend, c, ldc);
}
#endif

// Eigen, and the case k == 0, add to C itself: another addend (a bias) is copied into C
// first. Returns the scale to apply to C.
float addend_into_c(const Addend& addend, int64_t m, int64_t n, float* c, int64_t ldc) {
  if (addend.scale != 0.0f && addend.data != c)
    for (int64_t r = 0; r < m; ++r) std::copy_n(addend.data + r * addend.ld, n, c + r * ldc);
  return addend.scale;
}

void gemm_on_one_thread(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, const Addend& addend, float* c,
                        int64_t ldc) {
  Map cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    const float beta = addend_into_c(addend, m, n, c, ldc);
    if (beta == 0.0f) cm.setZero(); else cm *= beta;
    return;
  }
#if defined(__AVX512F__)
  const StridedMatrix op_a = trans_a ? StridedMatrix{a, 1, lda} : StridedMatrix{a, lda, 1};
  const StridedMatrix op_b = trans_b ? StridedMatrix{b, 1, ldb} : StridedMatrix{b, ldb, 1};
  packed_gemm(m, n, k, alpha, op_a, op_b, addend, c, ldc);
#else
  const float beta = addend_into_c(addend, m, n, c, ldc);
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) multiply(am, bm, alpha, beta, cm);
  else if (trans_a && !trans_b) multiply(am.transpose(), bm, alpha, beta, cm);
  else if (!trans_a && trans_b) multiply(am, bm.transpose(), alpha, beta, cm);
  else multiply(am.transpose(), bm.transpose(), alpha, beta, cm);
#endif
}

std::atomic<int64_t> multiply_adds{0};

// With more than one kernel thread, C is cut into bands of whole rows (or, when C is wider
// than tall, of whole columns), one GEMM each. Every element of C is still one thread's sum
// over k, in the same order with our AVX-512 kernel (Eigen's blocking may change with the
// band's size, and with it the last bits).
void gemm_adding(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, const Addend& addend, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  multiply_adds.fetch_add(m * n * k, std::memory_order_relaxed);
  const int threads = kernel_threads();
  if (threads == 1 || m * n * k < kParallelMultiplyAdds) {
    gemm_on_one_thread(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, addend, c, ldc);
    return;
  }
  // Bands of 24 rows (two 12-row or three 8-row tiles) or of 32 columns (one tile).
  const bool by_rows = m >= n;
  const int64_t unit = by_rows ? 24 : 32, extent = by_rows ? m : n;
  const int64_t units = (extent + unit - 1) / unit;
  const int parts = static_cast<int>(std::min<int64_t>(threads, units));
  parallel_parts(parts, [&](int part) {
    const int64_t first = std::min(extent, units * part / parts * unit);
    const int64_t last = std::min(extent, units * (part + 1) / parts * unit);
    if (first == last) return;
    if (by_rows) {
      const float* a_rows = trans_a ? a + first : a + first * lda;
      gemm_on_one_thread(trans_a, trans_b, last - first, n, k, alpha, a_rows, lda, b, ldb, addend.at(first, 0),
                         c + first * ldc, ldc);
    } else {
      const float* b_columns = trans_b ? b + first * ldb : b + first;
      gemm_on_one_thread(trans_a, trans_b, m, last - first, k, alpha, a, lda, b_columns, ldb, addend.at(0, first),
                         c + first, ldc);
    }
  });
}
}  // namespace

int64_t multiply_adds_done() { return multiply_adds.load(); }

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  gemm_adding(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, Addend{c, ldc, beta}, c, ldc);
}

void gemm_plus_bias(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                    const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
  gemm_adding(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, Addend{bias, 0, 1.0f}, c, ldc);
}

// With more than one kernel thread, each thread takes a share of the products whole.
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c, int64_t batch) {
  const auto products = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
  };
  const int threads = kernel_threads();
  if (threads == 1 || batch == 1 || batch * m * n * k < kParallelMultiplyAdds) {
    products(0, batch);  // (one product: gemm splits it)
    return;
  }
  const int parts = static_cast<int>(std::min<int64_t>(threads, batch));
  parallel_parts(parts, [&](int part) { products(batch * part / parts, batch * (part + 1) / parts); });
}

}  // namespace minipipe::kernels::cpu
