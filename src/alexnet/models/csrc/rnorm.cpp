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

template <typename acc_t>
inline acc_t inverse_power(acc_t d, acc_t beta) {
  if (beta == acc_t(0.75)) {  // the constant of every net here: rsqrt * sqrt(rsqrt), 4x cheaper than pow
    acc_t r = acc_t(1) / std::sqrt(d);
    return r * std::sqrt(r);
  }
  return std::pow(d, -beta);
}

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

template <typename scalar_t, bool kChannelsInner, bool kThreeQuarters>
void cross_forward_kernel(const scalar_t* x, scalar_t* y, const Geometry g, int64_t size, double alpha,
                          double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t half = size / 2, C = g.C, HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k);
  at::parallel_for(0, g.N * HW, 64, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> v(C), s(C), f(C), sq(C + size, acc_t(0));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t base = n * g.sN + (hw / g.W) * g.sH + (hw % g.W) * g.sW;
      const int64_t sc = kChannelsInner ? 1 : g.sC;
      const scalar_t* xp = x + base;
      for (int64_t c = 0; c < C; ++c) v[c] = load<scalar_t, acc_t>(xp + c * sc);
      for (int64_t c = 0; c < C; ++c) sq[c + half] = v[c] * v[c];
      sliding_sum(sq.data(), s.data(), C, size);
      for (int64_t c = 0; c < C; ++c) s[c] = kk + a * s[c];
      inverse_powers<acc_t, kThreeQuarters>(s.data(), f.data(), C, b);
      scalar_t* yp = y + base;
      for (int64_t c = 0; c < C; ++c) store(yp + c * sc, v[c] * f[c]);
    }
  });
}

template <typename scalar_t, bool kChannelsInner, bool kThreeQuarters>
void cross_backward_kernel(const scalar_t* x, const scalar_t* go, scalar_t* gi, const Geometry g, int64_t size,
                           double alpha, double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t half = size / 2, rest = size - 1 - half, C = g.C, HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k), two_ab = acc_t(2) * a * b;
  at::parallel_for(0, g.N * HW, 64, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> v(C), gv(C), d(C), f(C), s(C), sq(C + size, acc_t(0)), u(C + size, acc_t(0));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, hw = p % HW;
      const int64_t base = n * g.sN + (hw / g.W) * g.sH + (hw % g.W) * g.sW;
      const int64_t sc = kChannelsInner ? 1 : g.sC;
      const scalar_t* xp = x + base;
      const scalar_t* gp = go + base;
      for (int64_t c = 0; c < C; ++c) v[c] = load<scalar_t, acc_t>(xp + c * sc);
      for (int64_t c = 0; c < C; ++c) gv[c] = load<scalar_t, acc_t>(gp + c * sc);
      for (int64_t c = 0; c < C; ++c) sq[c + half] = v[c] * v[c];
      sliding_sum(sq.data(), d.data(), C, size);
      for (int64_t c = 0; c < C; ++c) d[c] = kk + a * d[c];
      inverse_powers<acc_t, kThreeQuarters>(d.data(), f.data(), C, b);
      for (int64_t c = 0; c < C; ++c) u[c + rest] = gv[c] * v[c] * f[c] / d[c];  // g y / d, for the transposed window
      sliding_sum(u.data(), s.data(), C, size);
      scalar_t* ip = gi + base;
      for (int64_t c = 0; c < C; ++c) store(ip + c * sc, gv[c] * f[c] - two_ab * v[c] * s[c]);
    }
  });
}

// ------------------------------------------------------------------------------------ spatial

// The size x size window sum of x^2 (or of an acc_t buffer) around (h, w), for every channel.
template <typename src_t, typename acc_t>
inline void window_sum(const src_t* src, int64_t n_off, int64_t h, int64_t w, const Geometry& g, int64_t size,
                       bool square, acc_t* out, int64_t sC) {
  const int64_t half = size / 2;
  for (int64_t c = 0; c < g.C; ++c) out[c] = 0;
  for (int64_t dh = -half; dh <= half; ++dh) {
    const int64_t hh = h + dh;
    if (hh < 0 || hh >= g.H) continue;
    for (int64_t dw = -half; dw <= half; ++dw) {
      const int64_t ww = w + dw;
      if (ww < 0 || ww >= g.W) continue;
      const src_t* q = src + n_off + hh * g.sH + ww * g.sW;
      if (square) {
        for (int64_t c = 0; c < g.C; ++c) {
          acc_t t = acc_t(q[c * sC]);
          out[c] += t * t;
        }
      } else {
        for (int64_t c = 0; c < g.C; ++c) out[c] += acc_t(q[c * sC]);
      }
    }
  }
}

template <typename scalar_t>
void spatial_forward_kernel(const scalar_t* x, scalar_t* y, const Geometry g, int64_t size, double alpha,
                            double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k);
  at::parallel_for(0, g.N * HW, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> s(g.C);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, h = (p % HW) / g.W, w = p % g.W;
      const int64_t base = n * g.sN + h * g.sH + w * g.sW;
      window_sum(x, n * g.sN, h, w, g, size, true, s.data(), g.sC);
      for (int64_t c = 0; c < g.C; ++c) {
        y[base + c * g.sC] = scalar_t(acc_t(x[base + c * g.sC]) * inverse_power(kk + a * s[c], b));
      }
    }
  });
}

template <typename scalar_t>
void spatial_backward_kernel(const scalar_t* x, const scalar_t* go, scalar_t* gi, const Geometry g, int64_t size,
                             double alpha, double beta, double k) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t HW = g.H * g.W;
  const acc_t a = acc_t(alpha), b = acc_t(beta), kk = acc_t(k);
  // pass 1: u = g y / d at every pixel (a neighbour's u is needed by pass 2), gi = g d^-b
  std::vector<acc_t> u(g.N * g.C * HW);
  std::vector<acc_t> first(g.N * g.C * HW);
  // u and first are laid out like x (same strides), so that pass 2 reads them as it reads x
  at::parallel_for(0, g.N * HW, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> s(g.C);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, h = (p % HW) / g.W, w = p % g.W;
      const int64_t base = n * g.sN + h * g.sH + w * g.sW;
      window_sum(x, n * g.sN, h, w, g, size, true, s.data(), g.sC);
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t i = base + c * g.sC;
        const acc_t d = kk + a * s[c];
        const acc_t f = inverse_power(d, b);
        const acc_t gg = acc_t(go[i]);
        u[i] = gg * acc_t(x[i]) * f / d;
        first[i] = gg * f;
      }
    }
  });
  // pass 2: gi = g d^-b - 2 a b x * (window sum of u); the centred window is its own transpose
  at::parallel_for(0, g.N * HW, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> s(g.C);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / HW, h = (p % HW) / g.W, w = p % g.W;
      const int64_t base = n * g.sN + h * g.sH + w * g.sW;
      window_sum(u.data(), n * g.sN, h, w, g, size, false, s.data(), g.sC);
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t i = base + c * g.sC;
        gi[i] = scalar_t(first[i] - acc_t(2) * a * b * acc_t(x[i]) * s[c]);
      }
    }
  });
}

// ------------------------------------------------------------------------------------ entry points

void check(const at::Tensor& x, int64_t size) {
  TORCH_CHECK(x.device().is_cpu(), "response norm (C++): CPU tensors only");
  TORCH_CHECK(size >= 1, "response norm: size must be at least 1");
}

at::Tensor cross_forward(at::Tensor x, int64_t size, double alpha, double beta, double k) {
  check(x, size);
  x = dense(x);
  at::Tensor y = at::empty_like(x);
  const Geometry g = geometry(x);
  const bool inner = g.sC == 1 && g.C > 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "lrn_cross_forward", [&] {
    auto* xp = x.data_ptr<scalar_t>();
    auto* yp = y.data_ptr<scalar_t>();
    if (inner && beta == 0.75) cross_forward_kernel<scalar_t, true, true>(xp, yp, g, size, alpha, beta, k);
    else if (inner) cross_forward_kernel<scalar_t, true, false>(xp, yp, g, size, alpha, beta, k);
    else if (beta == 0.75) cross_forward_kernel<scalar_t, false, true>(xp, yp, g, size, alpha, beta, k);
    else cross_forward_kernel<scalar_t, false, false>(xp, yp, g, size, alpha, beta, k);
  });
  return y;
}

at::Tensor cross_backward(at::Tensor x, at::Tensor grad, int64_t size, double alpha, double beta, double k) {
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
    if (inner && beta == 0.75) cross_backward_kernel<scalar_t, true, true>(xp, gp, ip, g, size, alpha, beta, k);
    else if (inner) cross_backward_kernel<scalar_t, true, false>(xp, gp, ip, g, size, alpha, beta, k);
    else if (beta == 0.75) cross_backward_kernel<scalar_t, false, true>(xp, gp, ip, g, size, alpha, beta, k);
    else cross_backward_kernel<scalar_t, false, false>(xp, gp, ip, g, size, alpha, beta, k);
  });
  return gi;
}

at::Tensor spatial_forward(at::Tensor x, int64_t size, double alpha, double beta, double k) {
  check(x, size);
  TORCH_CHECK(size % 2 == 1, "spatial response norm: the window size must be odd");
  x = dense(x);
  at::Tensor y = at::empty_like(x);
  const Geometry g = geometry(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rnorm_spatial_forward", [&] {
    spatial_forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), g, size, alpha, beta, k);
  });
  return y;
}

at::Tensor spatial_backward(at::Tensor x, at::Tensor grad, int64_t size, double alpha, double beta, double k) {
  check(x, size);
  x = dense(x);
  grad = grad.to(x.scalar_type()).contiguous(x.suggest_memory_format());
  if (grad.strides() != x.strides()) grad = grad.contiguous(), x = x.contiguous();
  at::Tensor gi = at::empty_like(x);
  const Geometry g = geometry(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rnorm_spatial_backward", [&] {
    spatial_backward_kernel<scalar_t>(x.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), gi.data_ptr<scalar_t>(),
                                      g, size, alpha, beta, k);
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
