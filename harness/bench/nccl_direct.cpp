#include "harness/bench/nccl_direct.h"

#include <c10/cuda/CUDAGuard.h>

namespace lb {

void nccl_direct(NcclCommunicator& c, const std::string& op, torch::Tensor& in, torch::Tensor& out,
                 const std::vector<int64_t>& rows, const std::vector<int64_t>& recv_rows) {
  c10::cuda::CUDAGuard guard(c.device());
  const ncclDataType_t dt = nccl_dtype(in.scalar_type());
  const cudaStream_t s = c.stream();
  ncclComm_t comm = c.comm();
  const int64_t row_elems = in.size(0) ? in.numel() / in.size(0) : out.numel() / std::max<int64_t>(out.size(0), 1);
  const int64_t row_bytes = row_elems * static_cast<int64_t>(in.element_size());
  char* src = static_cast<char*>(in.data_ptr());
  // all_reduce and broadcast work in place and pass no output (LibTorch 2 refuses data_ptr() on it).
  char* dst = out.defined() ? static_cast<char*>(out.data_ptr()) : nullptr;
  const std::string what = "direct " + op;
  if (op == "all_reduce") {
    check_nccl(ncclAllReduce(src, src, in.numel(), dt, ncclSum, comm, s), what);
  } else if (op == "all_gather" || op == "all_gatherv/padded") {
    check_nccl(ncclAllGather(src, dst, in.numel(), dt, comm, s), what);
  } else if (op == "reduce_scatter" || op == "reduce_scatterv/padded") {
    check_nccl(ncclReduceScatter(src, dst, out.numel(), dt, ncclSum, comm, s), what);
  } else if (op == "broadcast") {
    check_nccl(ncclBroadcast(src, src, in.numel(), dt, 0, comm, s), what);
  } else if (op == "all_gatherv/grouped" || op == "reduce_scatterv/grouped" || op == "all_to_allv") {
    check_nccl(ncclGroupStart(), what);
    int64_t a = 0, b = 0;
    for (int r = 0; r < c.size(); ++r) {
      if (op == "all_gatherv/grouped" && rows[r] > 0)
        check_nccl(ncclBroadcast(r == c.rank() ? src : dst + a * row_bytes, dst + a * row_bytes, rows[r] * row_elems,
                                 dt, r, comm, s),
                   what);
      if (op == "reduce_scatterv/grouped" && rows[r] > 0)
        check_nccl(ncclReduce(src + a * row_bytes, r == c.rank() ? dst : src + a * row_bytes, rows[r] * row_elems, dt,
                              ncclSum, r, comm, s),
                   what);
      if (op == "all_to_allv") {
        if (rows[r] > 0) check_nccl(ncclSend(src + a * row_bytes, rows[r] * row_elems, dt, r, comm, s), what);
        if (recv_rows[r] > 0) check_nccl(ncclRecv(dst + b * row_bytes, recv_rows[r] * row_elems, dt, r, comm, s), what);
        b += recv_rows[r];
      }
      a += rows[r];
    }
    check_nccl(ncclGroupEnd(), what);
  } else {
    throw std::invalid_argument("nccl_direct: unknown op " + op);
  }
  c.ready(what);
}

}  // namespace lb
