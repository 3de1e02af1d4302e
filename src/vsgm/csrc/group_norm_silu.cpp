// silu(group_norm(x + bias)) and its gradients for float32 or bfloat16 channels-last tensors on a CPU.
//
// PyTorch runs this as three or four kernels (add, GroupNorm, SiLU; and their backward), each a pass over
// memory, and its channels-last GroupNorm backward is several times slower than its contiguous one. Here
// the forward reads x twice (statistics, output) and the backward reads x and dy twice (sums, dx); the
// normalised activation is recomputed instead of stored. bias is a constant per image and channel
// (the UNet's time embedding), folded into the statistics.
//
// Layout: x (N, C, *spatial) in channels-last memory is an [N][L][C] array, L = number of positions.
// Work is split across images; every image is summed in one fixed order, so results do not depend on
// the number of threads.
//
// bfloat16 (the activations of a bf16 autocast run): x, y, dy and dx are bf16 in memory, everything is
// computed in float (statistics in double, as for float32), so a bf16 network pays no dtype conversion
// pass per layer; the per-channel weight, bias and shift stay float32 (master weights).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kRowBlock = 64;  // rows summed in float before adding into double accumulators

// exp(-v) as a polynomial the compiler vectorises (Cephes' expf, about 1 ulp over the clamped range).
inline float exp_neg(float v) {
  const float x = std::min(std::max(-v, -87.0f), 88.0f);
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<int32_t>(k) + 127) << 23);
}

inline float sigmoid(float v) { return 1.0f / (1.0f + exp_neg(v)); }

// dy * d silu(h) / dh
inline float silu_grad(float dy, float h) {
  const float s = sigmoid(h);
  return dy * s * (1.0f + h * (1.0f - s));
}

// Element access of the two storage types: float32 as it is, bfloat16 as the upper half of a float32
// (rounded to nearest even, as c10::BFloat16 does), written out so that the loops vectorise.
template <typename T>
struct Elem;

template <>
struct Elem<float> {
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};

template <>
struct Elem<uint16_t> {
  static float load(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }
  static uint16_t store(float v) {
    const uint32_t u = std::bit_cast<uint32_t>(v);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return static_cast<uint16_t>(v != v ? 0x7FC0u : rounded);
  }
};

template <typename T>
const T* data(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}

template <typename T>
T* mutable_data(at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}

void check(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& gamma, const at::Tensor& beta,
           int64_t groups) {
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "float32 or bfloat16 CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast), "a channels-last 4-D input");
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(groups > 0 && C % groups == 0, "channels must divide into groups");
  TORCH_CHECK(gamma.numel() == C && beta.numel() == C && gamma.is_contiguous() && beta.is_contiguous() &&
                  gamma.scalar_type() == at::kFloat && beta.scalar_type() == at::kFloat,
              "one float32 weight and bias per channel");
  TORCH_CHECK(bias.numel() == 0 || (bias.numel() == N * C && bias.is_contiguous() &&
                                    bias.scalar_type() == at::kFloat),
              "the shift is empty or one float32 value per image and channel");
}

// Per-image scale a and offset b of the normalisation: silu(a[c] * x + b[c]).
void scale_offset(int64_t n, int64_t C, int64_t groups, const float* bias, const float* gamma, const float* beta,
                  const float* mean, const float* rstd, float* a, float* b) {
  const int64_t D = C / groups;
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean[n * groups + c / D], r = rstd[n * groups + c / D];
    const double e = bias ? bias[n * C + c] : 0.0;
    a[c] = static_cast<float>(r * gamma[c]);
    b[c] = static_cast<float>(beta[c] + r * gamma[c] * (e - m));
  }
}

}  // namespace

namespace {

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& gamma, const at::Tensor& beta,
                  int64_t groups, double eps, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  const int64_t N = x.size(0), C = x.size(1), L = N ? x.numel() / (N * C) : 0, D = C / groups;
  const T* X = data<T>(x);
  const float* E = bias.numel() ? bias.const_data_ptr<float>() : nullptr;
  const float* G = gamma.const_data_ptr<float>();
  const float* Bt = beta.const_data_ptr<float>();
  T* Y = mutable_data<T>(y);
  float* M = mean.mutable_data_ptr<float>();
  float* R = rstd.mutable_data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<double> s1(C), s2(C);
    std::vector<float> f1(C), f2(C), a(C), b(C);
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = X + n * L * C;
      std::fill(s1.begin(), s1.end(), 0.0);
      std::fill(s2.begin(), s2.end(), 0.0);
      for (int64_t l0 = 0; l0 < L; l0 += kRowBlock) {
        std::fill(f1.begin(), f1.end(), 0.0f);
        std::fill(f2.begin(), f2.end(), 0.0f);
        float* __restrict p1 = f1.data();
        float* __restrict p2 = f2.data();
        for (int64_t l = l0; l < std::min(L, l0 + kRowBlock); ++l) {
          const T* __restrict row = xn + l * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const float v = Elem<T>::load(row[c]);
            p1[c] += v;
            p2[c] += v * v;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          s1[c] += f1[c];
          s2[c] += f2[c];
        }
      }
      for (int64_t g = 0; g < groups; ++g) {
        double m = 0.0, q = 0.0;  // sums of u and u^2 over the group, u = x + e
        for (int64_t c = g * D; c < (g + 1) * D; ++c) {
          const double e = E ? E[n * C + c] : 0.0;
          m += s1[c] + L * e;
          q += s2[c] + 2.0 * e * s1[c] + L * e * e;
        }
        m /= static_cast<double>(D * L);
        const double var = std::max(q / static_cast<double>(D * L) - m * m, 0.0);
        M[n * groups + g] = static_cast<float>(m);
        R[n * groups + g] = static_cast<float>(1.0 / std::sqrt(var + eps));
      }
      scale_offset(n, C, groups, E, G, Bt, M, R, a.data(), b.data());
      const float* __restrict pa = a.data();
      const float* __restrict pb = b.data();
      T* yn = Y + n * L * C;
      for (int64_t l = 0; l < L; ++l) {
        const T* __restrict row = xn + l * C;
        T* __restrict out = yn + l * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const float h = pa[c] * Elem<T>::load(row[c]) + pb[c];
          out[c] = Elem<T>::store(h * sigmoid(h));
        }
      }
    }
  });
}

}  // namespace

// Returns y (x's dtype), mean (N, groups) and rstd (N, groups) of x + bias (float32).
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& gamma,
                                const at::Tensor& beta, int64_t groups, double eps) {
  check(x, bias, gamma, beta, groups);
  auto y = at::empty_like(x);
  auto mean = at::empty({x.size(0), groups}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
  auto rstd = at::empty_like(mean);
  if (x.scalar_type() == at::kBFloat16) {
    forward_impl<uint16_t>(x, bias, gamma, beta, groups, eps, y, mean, rstd);
  } else {
    forward_impl<float>(x, bias, gamma, beta, groups, eps, y, mean, rstd);
  }
  return {y, mean, rstd};
}

namespace {

template <typename T>
void backward_impl(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& bias, const at::Tensor& gamma,
                   const at::Tensor& beta, const at::Tensor& mean, const at::Tensor& rstd, int64_t groups,
                   at::Tensor& dx, at::Tensor& dbias, at::Tensor& dgamma_part, at::Tensor& dbeta_part) {
  const int64_t N = x.size(0), C = x.size(1), L = N ? x.numel() / (N * C) : 0, D = C / groups;
  const T* DY = data<T>(dy);
  const T* X = data<T>(x);
  const float* E = bias.numel() ? bias.const_data_ptr<float>() : nullptr;
  const float* G = gamma.const_data_ptr<float>();
  const float* Bt = beta.const_data_ptr<float>();
  const float* M = mean.const_data_ptr<float>();
  const float* R = rstd.const_data_ptr<float>();
  T* DX = mutable_data<T>(dx);
  float* DE = dbias.mutable_data_ptr<float>();
  double* PG = dgamma_part.mutable_data_ptr<double>();
  double* PB = dbeta_part.mutable_data_ptr<double>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<float> a(C), b(C), f1(C), f2(C), f3(C), c1(C), c2(C), c3(C);
    std::vector<double> sdh(C), sdhx(C), sx(C);
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = X + n * L * C;
      const T* dyn = DY + n * L * C;
      scale_offset(n, C, groups, E, G, Bt, M, R, a.data(), b.data());
      const float* __restrict pa = a.data();
      const float* __restrict pb = b.data();
      // pass 1: per channel, the sums of dh (the gradient at the normalised value), dh * x and x
      std::fill(sdh.begin(), sdh.end(), 0.0);
      std::fill(sdhx.begin(), sdhx.end(), 0.0);
      std::fill(sx.begin(), sx.end(), 0.0);
      for (int64_t l0 = 0; l0 < L; l0 += kRowBlock) {
        std::fill(f1.begin(), f1.end(), 0.0f);
        std::fill(f2.begin(), f2.end(), 0.0f);
        std::fill(f3.begin(), f3.end(), 0.0f);
        float* __restrict p1 = f1.data();
        float* __restrict p2 = f2.data();
        float* __restrict p3 = f3.data();
        for (int64_t l = l0; l < std::min(L, l0 + kRowBlock); ++l) {
          const T* __restrict row = xn + l * C;
          const T* __restrict drow = dyn + l * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const float v = Elem<T>::load(row[c]);
            const float dh = silu_grad(Elem<T>::load(drow[c]), pa[c] * v + pb[c]);
            p1[c] += dh;
            p2[c] += dh * v;
            p3[c] += v;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          sdh[c] += f1[c];
          sdhx[c] += f2[c];
          sx[c] += f3[c];
        }
      }
      // GroupNorm's backward in u = x + e (PyTorch's formulation): du = r*gamma*dh + k2*u + k3 per group
      for (int64_t g = 0; g < groups; ++g) {
        const double m = M[n * groups + g], r = R[n * groups + g];
        double ds = 0.0, db = 0.0;
        for (int64_t c = g * D; c < (g + 1) * D; ++c) {
          const double e = E ? E[n * C + c] : 0.0;
          ds += (sdhx[c] + e * sdh[c]) * G[c];
          db += sdh[c] * G[c];
        }
        const double scale = 1.0 / static_cast<double>(D * L);
        const double k2 = (db * m - ds) * r * r * r * scale;
        const double k3 = -k2 * m - db * r * scale;
        for (int64_t c = g * D; c < (g + 1) * D; ++c) {
          const double e = E ? E[n * C + c] : 0.0;
          const double su = sx[c] + L * e, sdhu = sdhx[c] + e * sdh[c];
          c1[c] = static_cast<float>(r * G[c]);
          c2[c] = static_cast<float>(k2);
          c3[c] = static_cast<float>(k3 + k2 * e);
          PG[n * C + c] = (sdhu - m * sdh[c]) * r;
          PB[n * C + c] = sdh[c];
          DE[n * C + c] = static_cast<float>(r * G[c] * sdh[c] + k2 * su + k3 * L);
        }
      }
      // pass 2: dx
      const float* __restrict q1 = c1.data();
      const float* __restrict q2 = c2.data();
      const float* __restrict q3 = c3.data();
      T* dxn = DX + n * L * C;
      for (int64_t l = 0; l < L; ++l) {
        const T* __restrict row = xn + l * C;
        const T* __restrict drow = dyn + l * C;
        T* __restrict out = dxn + l * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const float v = Elem<T>::load(row[c]);
          const float dh = silu_grad(Elem<T>::load(drow[c]), pa[c] * v + pb[c]);
          out[c] = Elem<T>::store(q1[c] * dh + q2[c] * v + q3[c]);
        }
      }
    }
  });
}

}  // namespace

// Returns dx (x's dtype), dbias (N, C; empty without bias), dgamma and dbeta (float32).
std::vector<at::Tensor> backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& bias,
                                 const at::Tensor& gamma, const at::Tensor& beta, const at::Tensor& mean,
                                 const at::Tensor& rstd, int64_t groups) {
  check(x, bias, gamma, beta, groups);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                  dy.scalar_type() == x.scalar_type(),
              "a channels-last gradient shaped like x, of its dtype");
  const int64_t N = x.size(0), C = x.size(1);
  auto dx = at::empty_like(x);
  auto dbias = at::empty({N, C}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
  auto dgamma_part = at::empty({N, C}, dbias.options().dtype(at::kDouble));
  auto dbeta_part = at::empty_like(dgamma_part);
  if (x.scalar_type() == at::kBFloat16) {
    backward_impl<uint16_t>(dy, x, bias, gamma, beta, mean, rstd, groups, dx, dbias, dgamma_part, dbeta_part);
  } else {
    backward_impl<float>(dy, x, bias, gamma, beta, mean, rstd, groups, dx, dbias, dgamma_part, dbeta_part);
  }
  const double* PG = dgamma_part.const_data_ptr<double>();
  const double* PB = dbeta_part.const_data_ptr<double>();
  // per-image partial sums added in image order: the same bits for any number of threads
  auto dgamma = at::empty({C}, gamma.options());
  auto dbeta = at::empty({C}, gamma.options());
  for (int64_t c = 0; c < C; ++c) {
    double sg = 0.0, sb = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      sg += PG[n * C + c];
      sb += PB[n * C + c];
    }
    dgamma.mutable_data_ptr<float>()[c] = static_cast<float>(sg);
    dbeta.mutable_data_ptr<float>()[c] = static_cast<float>(sb);
  }
  return {dx, bias.numel() ? dbias : at::empty({0}, dbias.options()), dgamma, dbeta};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "silu(group_norm(x + bias)) -> (y, mean, rstd)");
  m.def("backward", &backward, "gradients of forward -> (dx, dbias, dgamma, dbeta)");
}
