// Fused response normalisation for the CPU (built with -fno-math-errno so that sqrt vectorises): AlexNet's cross-map LRN (§3.3) and cuda-convnet's
// spatial rnorm, forward and backward each in one pass over memory.
//
// Why C++: the eager PyTorch version is five memory-bound passes (square, pad, 3-D average pool,
// power, multiply) plus as many for the gradient, and avg_pool3d has no bf16 CPU kernel; the LRN
// took two thirds of the paper's AlexNet training step in bf16 on the 2-core dev machine. Here
// each pixel's channels (contiguous in channels-last memory) are loaded once into a small buffer
// in L1, and the window sums, the scale and the output are computed there, vectorised over the
// channels by the compiler. The backward pass recomputes the scale from x instead of saving it:
// that is cheaper than writing and reading back a float per element.
//
//   cross-map:  d_c = k + a * sum_{j = c - n/2 .. c + n - 1 - n/2} x_j^2,    y_c = x_c d_c^-b
//   spatial:    d   = k + a * sum_{size x size window, zero padded} x^2,      y   = x d^-b
//   gradient:   dx  = g d^-b - 2 a b x * W^T(g y / d)      (W^T: the window's transpose)
//
// Layouts: NCHW-contiguous or channels-last-contiguous tensors (the caller makes other strides
// contiguous); float64, float32, bfloat16 and float16 (the last two computed in float32).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Geometry {
  int64_t N, C, H, W;
  int64_t sN, sC, sH, sW;  // element strides
};

Geometry geometry(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
}

at::Tensor dense(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "response norm: expected an (N, C, H, W) tensor, got ", x.dim(), " dimensions");
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

// ------------------------------------------------------------------------------------ cross-map

// Loads and stores between the storage type and the compute type, written so that the compiler
// vectorises them (c10::BFloat16's own conversion has a branch for NaN that blocks it).
template <typename scalar_t, typename acc_t>
inline acc_t load(const scalar_t* p) { return acc_t(*p); }
template <>
inline float load<c10::BFloat16, float>(const c10::BFloat16* p) {
  uint32_t bits = uint32_t(p->x) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
template <typename scalar_t, typename acc_t>
inline void store(scalar_t* p, acc_t v) { *p = scalar_t(v); }
template <>
inline void store<c10::BFloat16, float>(c10::BFloat16* p, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;  // round to nearest even
  p->x = uint16_t(v != v ? 0x7FC0u : rounded);
}

// sum_{j < size} src[c + j] for c < C, as `size` vectorisable passes over the channels
template <typename acc_t>
inline void sliding_sum(const acc_t* __restrict src, acc_t* __restrict out, int64_t C, int64_t size) {
  for (int64_t c = 0; c < C; ++c) out[c] = src[c];
  for (int64_t j = 1; j < size; ++j) {
    const acc_t* s = src + j;
    for (int64_t c = 0; c < C; ++c) out[c] += s[c];
  }
}

template <typename acc_t, bool kThreeQuarters>
inline void inverse_powers(const acc_t* __restrict d, acc_t* __restrict f, int64_t C, acc_t beta) {
  if (kThreeQuarters) {
    for (int64_t c = 0; c < C; ++c) {
      const acc_t r = acc_t(1) / std::sqrt(d[c]);
      f[c] = r * std::sqrt(r);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) f[c] = std::pow(d[c], -beta);
  }
}

// `groups`: the channels split into that many equal groups (AlexNet's columns), each normalised
// on its own: the window never reaches into another group's channels.
template <typename scalar_t, bool kChannelsInner, bool kThreeQuarters>
void cross_forward_kernel(const scalar_t* x, scalar_t* y, const Geometry g, int64_t size, double alpha,
                          double beta, double k, int64_t groups) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t half = size / 2, C = g.C / groups, HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k);
  at::parallel_for(0, g.N * HW, 64, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> v(C), s(C), f(C), sq(C + size, acc_t(0));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t base = n * g.sN + (hw / g.W) * g.sH + (hw % g.W) * g.sW;
      const int64_t sc = kChannelsInner ? 1 : g.sC;
      for (int64_t gr = 0; gr < groups; ++gr) {
        const scalar_t* xp = x + base + gr * C * sc;
        for (int64_t c = 0; c < C; ++c) v[c] = load<scalar_t, acc_t>(xp + c * sc);
        for (int64_t c = 0; c < C; ++c) sq[c + half] = v[c] * v[c];
        sliding_sum(sq.data(), s.data(), C, size);
        for (int64_t c = 0; c < C; ++c) s[c] = kk + a * s[c];
        inverse_powers<acc_t, kThreeQuarters>(s.data(), f.data(), C, b);
        scalar_t* yp = y + base + gr * C * sc;
        for (int64_t c = 0; c < C; ++c) store(yp + c * sc, v[c] * f[c]);
      }
    }
  });
}

template <typename scalar_t, bool kChannelsInner, bool kThreeQuarters>
void cross_backward_kernel(const scalar_t* x, const scalar_t* go, scalar_t* gi, const Geometry g, int64_t size,
                           double alpha, double beta, double k, int64_t groups) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t half = size / 2, rest = size - 1 - half, C = g.C / groups, HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k), two_ab = acc_t(2) * a * b;
  at::parallel_for(0, g.N * HW, 64, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> v(C), gv(C), d(C), f(C), s(C), sq(C + size, acc_t(0)), u(C + size, acc_t(0));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t base = n * g.sN + (hw / g.W) * g.sH + (hw % g.W) * g.sW;
      const int64_t sc = kChannelsInner ? 1 : g.sC;
      for (int64_t gr = 0; gr < groups; ++gr) {
        const int64_t off = base + gr * C * sc;
        for (int64_t c = 0; c < C; ++c) v[c] = load<scalar_t, acc_t>(x + off + c * sc);
        for (int64_t c = 0; c < C; ++c) gv[c] = load<scalar_t, acc_t>(go + off + c * sc);
        for (int64_t c = 0; c < C; ++c) sq[c + half] = v[c] * v[c];
        sliding_sum(sq.data(), d.data(), C, size);
        for (int64_t c = 0; c < C; ++c) d[c] = kk + a * d[c];
        inverse_powers<acc_t, kThreeQuarters>(d.data(), f.data(), C, b);
        for (int64_t c = 0; c < C; ++c) u[c + rest] = gv[c] * v[c] * f[c] / d[c];  // g y / d, for the transposed window
        sliding_sum(u.data(), s.data(), C, size);
        for (int64_t c = 0; c < C; ++c) store(gi + off + c * sc, gv[c] * f[c] - two_ab * v[c] * s[c]);
      }
    }
  });
}

// ------------------------------------------------------------------------------------ spatial

// Channels-last only: a row (n, h, :, :) is W * C contiguous values, so the size x size window
// sum is separable into `size` vertical passes and `size` horizontal ones over whole rows,
// vectorised, instead of size^2 per pixel. `src` is read through `get`, squared when `square`.
template <typename src_t, typename acc_t>
inline void row_window_sum(const src_t* src, int64_t n, int64_t h, const Geometry& g, int64_t size, bool square,
                           acc_t* __restrict col, acc_t* __restrict out) {
  const int64_t half = size / 2, WC = g.W * g.C, C = g.C;
  // col holds (W + size - 1) * C values: half zero pixels on each side of the row
  for (int64_t i = 0; i < (g.W + size - 1) * C; ++i) col[i] = 0;
  acc_t* colw = col + half * C;
  for (int64_t dh = -half; dh <= half; ++dh) {
    const int64_t hh = h + dh;
    if (hh < 0 || hh >= g.H) continue;
    const src_t* row = src + n * g.sN + hh * g.sH;
    if (square) {
      for (int64_t i = 0; i < WC; ++i) {
        const acc_t t = load<src_t, acc_t>(row + i);
        colw[i] += t * t;
      }
    } else {
      for (int64_t i = 0; i < WC; ++i) colw[i] += load<src_t, acc_t>(row + i);
    }
  }
  for (int64_t i = 0; i < WC; ++i) out[i] = col[i];
  for (int64_t dw = 1; dw < size; ++dw) {
    const acc_t* s = col + dw * C;
    for (int64_t i = 0; i < WC; ++i) out[i] += s[i];
  }
}

template <typename scalar_t, bool kThreeQuarters>
void spatial_forward_kernel(const scalar_t* x, scalar_t* y, const Geometry g, int64_t size, double alpha,
                            double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t WC = g.W * g.C;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k);
  at::parallel_for(0, g.N * g.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col((g.W + size) * g.C), s(WC), f(WC);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.H, h = r % g.H;
      row_window_sum(x, n, h, g, size, true, col.data(), s.data());
      for (int64_t i = 0; i < WC; ++i) s[i] = kk + a * s[i];
      inverse_powers<acc_t, kThreeQuarters>(s.data(), f.data(), WC, b);
      const scalar_t* xr = x + n * g.sN + h * g.sH;
      scalar_t* yr = y + n * g.sN + h * g.sH;
      for (int64_t i = 0; i < WC; ++i) store(yr + i, load<scalar_t, acc_t>(xr + i) * f[i]);
    }
  });
}

template <typename scalar_t, bool kThreeQuarters>
void spatial_backward_kernel(const scalar_t* x, const scalar_t* go, scalar_t* gi, const Geometry g, int64_t size,
                             double alpha, double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t WC = g.W * g.C;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k), two_ab = acc_t(2) * a * b;
  // pass 1: u = g y / d at every pixel (pass 2 needs the neighbours'), laid out like x
  at::Tensor u_buf = at::empty({g.N * g.H * WC}, at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
  acc_t* u = u_buf.data_ptr<acc_t>();
  at::parallel_for(0, g.N * g.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col((g.W + size) * g.C), s(WC), f(WC);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.H, h = r % g.H, off = n * g.sN + h * g.sH;
      row_window_sum(x, n, h, g, size, true, col.data(), s.data());
      for (int64_t i = 0; i < WC; ++i) s[i] = kk + a * s[i];
      inverse_powers<acc_t, kThreeQuarters>(s.data(), f.data(), WC, b);
      for (int64_t i = 0; i < WC; ++i) {
        u[off + i] = load<scalar_t, acc_t>(go + off + i) * load<scalar_t, acc_t>(x + off + i) * f[i] / s[i];
      }
    }
  });
  // pass 2: gi = g d^-b - 2 a b x * (window sum of u); a centred window is its own transpose
  at::parallel_for(0, g.N * g.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col((g.W + size) * g.C), s(WC), f(WC), su(WC);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.H, h = r % g.H, off = n * g.sN + h * g.sH;
      row_window_sum(x, n, h, g, size, true, col.data(), s.data());
      for (int64_t i = 0; i < WC; ++i) s[i] = kk + a * s[i];
      inverse_powers<acc_t, kThreeQuarters>(s.data(), f.data(), WC, b);
      row_window_sum(u, n, h, g, size, false, col.data(), su.data());
      for (int64_t i = 0; i < WC; ++i) {
        const acc_t xv = load<scalar_t, acc_t>(x + off + i);
        store(gi + off + i, load<scalar_t, acc_t>(go + off + i) * f[i] - two_ab * xv * su[i]);
      }
    }
  });
}

// ------------------------------------------------------------------------------------ entry points

void check(const at::Tensor& x, int64_t size) {
  TORCH_CHECK(x.device().is_cpu(), "response norm (C++): CPU tensors only");
  TORCH_CHECK(size >= 1, "response norm: size must be at least 1");
}

at::Tensor cross_forward(at::Tensor x, int64_t size, double alpha, double beta, double k, int64_t groups) {
  check(x, size);
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "LRN: the channels do not split into ", groups, " groups");
  x = dense(x);
  at::Tensor y = at::empty_like(x);
  const Geometry g = geometry(x);
  const bool inner = g.sC == 1 && g.C > 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lrn_cross_forward", [&] {
    auto* xp = x.data_ptr<scalar_t>();
    auto* yp = y.data_ptr<scalar_t>();
    if (inner && beta == 0.75) cross_forward_kernel<scalar_t, true, true>(xp, yp, g, size, alpha, beta, k, groups);
    else if (inner) cross_forward_kernel<scalar_t, true, false>(xp, yp, g, size, alpha, beta, k, groups);
    else if (beta == 0.75) cross_forward_kernel<scalar_t, false, true>(xp, yp, g, size, alpha, beta, k, groups);
    else cross_forward_kernel<scalar_t, false, false>(xp, yp, g, size, alpha, beta, k, groups);
  });
  return y;
}

at::Tensor cross_backward(at::Tensor x, at::Tensor grad, int64_t size, double alpha, double beta, double k,
                          int64_t groups) {
  check(x, size);
  x = dense(x);
  grad = grad.to(x.scalar_type()).contiguous(x.suggest_memory_format());
  if (grad.strides() != x.strides()) grad = grad.contiguous(), x = x.contiguous();
  at::Tensor gi = at::empty_like(x);
  const Geometry g = geometry(x);
  const bool inner = g.sC == 1 && g.C > 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lrn_cross_backward", [&] {
    auto* xp = x.data_ptr<scalar_t>();
    auto* gp = grad.data_ptr<scalar_t>();
    auto* ip = gi.data_ptr<scalar_t>();
    if (inner && beta == 0.75) cross_backward_kernel<scalar_t, true, true>(xp, gp, ip, g, size, alpha, beta, k, groups);
    else if (inner) cross_backward_kernel<scalar_t, true, false>(xp, gp, ip, g, size, alpha, beta, k, groups);
    else if (beta == 0.75) cross_backward_kernel<scalar_t, false, true>(xp, gp, ip, g, size, alpha, beta, k, groups);
    else cross_backward_kernel<scalar_t, false, false>(xp, gp, ip, g, size, alpha, beta, k, groups);
  });
  return gi;
}

at::Tensor spatial_forward(at::Tensor x, int64_t size, double alpha, double beta, double k) {
  check(x, size);
  TORCH_CHECK(size % 2 == 1, "spatial response norm: the window size must be odd");
  TORCH_CHECK(x.dim() == 4, "spatial response norm: expected an (N, C, H, W) tensor");
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor y = at::empty_like(x);
  const Geometry g = geometry(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rnorm_spatial_forward", [&] {
    if (beta == 0.75) spatial_forward_kernel<scalar_t, true>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g, size, alpha, beta, k);
    else spatial_forward_kernel<scalar_t, false>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g, size, alpha, beta, k);
  });
  return y;
}

at::Tensor spatial_backward(at::Tensor x, at::Tensor grad, int64_t size, double alpha, double beta, double k) {
  check(x, size);
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  grad = grad.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor gi = at::empty_like(x);
  const Geometry g = geometry(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rnorm_spatial_backward", [&] {
    auto* xp = x.data_ptr<scalar_t>();
    auto* gp = grad.data_ptr<scalar_t>();
    auto* ip = gi.data_ptr<scalar_t>();
    if (beta == 0.75) spatial_backward_kernel<scalar_t, true>(xp, gp, ip, g, size, alpha, beta, k);
    else spatial_backward_kernel<scalar_t, false>(xp, gp, ip, g, size, alpha, beta, k);
  });
  return gi;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cross_forward", &cross_forward, "cross-map LRN forward");
  m.def("cross_backward", &cross_backward, "cross-map LRN backward");
  m.def("spatial_forward", &spatial_forward, "spatial response norm forward");
  m.def("spatial_backward", &spatial_backward, "spatial response norm backward");
}
