#include "kernels/grouped_linear.h"

#include <numeric>
#include <stdexcept>
#include <string>

#ifdef LB_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <cublas_v2.h>
#endif

namespace lb {

namespace {

void check_shapes(const torch::Tensor& x, const std::vector<int64_t>& counts, const torch::Tensor& w) {
  const int64_t rows = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  TORCH_CHECK(x.dim() == 2 && w.dim() == 3, "grouped_linear: x must be [N, K] and w [G, M, K]");
  TORCH_CHECK(x.size(0) == rows, "grouped_linear: x has ", x.size(0), " rows, the groups ", rows);
  TORCH_CHECK(w.size(0) == int64_t(counts.size()), "grouped_linear: ", w.size(0), " weights for ", counts.size(),
              " groups");
  TORCH_CHECK(w.size(2) == x.size(1), "grouped_linear: x has ", x.size(1), " columns, w expects ", w.size(2));
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), "grouped_linear: x and w differ in dtype");
}

torch::Tensor grouped_linear_loop(const torch::Tensor& x, const std::vector<int64_t>& counts, const torch::Tensor& w) {
  torch::Tensor y = torch::empty({x.size(0), w.size(1)}, x.options());
  int64_t offset = 0;
  for (size_t g = 0; g < counts.size(); ++g) {
    if (counts[g] == 0) continue;
    y.narrow(0, offset, counts[g]).copy_(torch::mm(x.narrow(0, offset, counts[g]), w[int64_t(g)].t()));
    offset += counts[g];
  }
  return y;
}

#ifdef LB_HAVE_CUDA
void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

cudaDataType_t cuda_type(torch::ScalarType t) {
  switch (t) {
    case torch::kBFloat16: return CUDA_R_16BF;
    case torch::kHalf: return CUDA_R_16F;
    case torch::kFloat32: return CUDA_R_32F;
    default: throw std::invalid_argument(std::string("grouped_linear: unsupported dtype ") + c10::toString(t));
  }
}

// Row-major y_g [n, M] = x_g [n, K] w_g^T is, in cuBLAS's column-major terms, y_g^T = w_g^T' x_g^T:
// op(A) = A^T with A = w_g read as K x M, B = x_g read as K x n, C = y_g read as M x n.
torch::Tensor grouped_linear_cublas(const torch::Tensor& x_in, const std::vector<int64_t>& counts,
                                    const torch::Tensor& w_in) {
  const torch::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const int64_t K = x.size(1), M = w.size(1);
  torch::Tensor y = torch::empty({x.size(0), M}, x.options());
  std::vector<int> m, n, k, lda, ldb, ldc, group_size;
  std::vector<int64_t> a, b, c;  // device addresses of each group's A (weight), B (input), C (output)
  const int64_t elem = x.element_size();
  auto address = [](const torch::Tensor& t, int64_t byte_offset) {
    return reinterpret_cast<int64_t>(t.data_ptr()) + byte_offset;
  };
  int64_t offset = 0;
  for (size_t g = 0; g < counts.size(); ++g) {
    if (counts[g] == 0) continue;
    m.push_back(int(M)), n.push_back(int(counts[g])), k.push_back(int(K));
    lda.push_back(int(K)), ldb.push_back(int(K)), ldc.push_back(int(M)), group_size.push_back(1);
    a.push_back(address(w, int64_t(g) * M * K * elem));
    b.push_back(address(x, offset * K * elem));
    c.push_back(address(y, offset * M * elem));
    offset += counts[g];
  }
  const int groups = int(m.size());
  if (groups == 0) return y;
  std::vector<int64_t> pointers = a;  // A pointers, then B, then C
  pointers.insert(pointers.end(), b.begin(), b.end());
  pointers.insert(pointers.end(), c.begin(), c.end());
  // The pointer arrays live in device memory; the sizes, leading dimensions and scalars on the host.
  const torch::Tensor device_pointers =
      torch::from_blob(pointers.data(), {int64_t(pointers.size())}, torch::kInt64).to(x.device());
  const void* const* da = reinterpret_cast<const void* const*>(device_pointers.data_ptr<int64_t>());
  const void* const* db = da + groups;
  void* const* dc = reinterpret_cast<void* const*>(device_pointers.data_ptr<int64_t>() + 2 * groups);
  const std::vector<cublasOperation_t> transa(groups, CUBLAS_OP_T), transb(groups, CUBLAS_OP_N);
  const std::vector<float> alpha(groups, 1.0f), beta(groups, 0.0f);
  const cudaDataType_t type = cuda_type(x.scalar_type());
  cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();  // on the current stream
  check_cublas(cublasGemmGroupedBatchedEx(handle, transa.data(), transb.data(), m.data(), n.data(), k.data(),
                                          alpha.data(), da, type, lda.data(), db, type, ldb.data(), beta.data(), dc,
                                          type, ldc.data(), groups, group_size.data(), CUBLAS_COMPUTE_32F),
               "grouped_linear");
  // The pointer array must outlive the GEMM: its memory goes back to the caching allocator, which
  // reuses it only for work on this same stream, ordered after the GEMM.
  return y;
}
#endif

}  // namespace

torch::Tensor grouped_linear(const torch::Tensor& x, const std::vector<int64_t>& counts, const torch::Tensor& w) {
  check_shapes(x, counts, w);
#ifdef LB_HAVE_CUDA
  if (x.is_cuda()) return grouped_linear_cublas(x, counts, w);
#endif
  return grouped_linear_loop(x, counts, w);
}

}  // namespace lb
