// time_held_burst (kernels/device_burst.h): on the CPU the burst runs once and has no device time;
// on a GPU a burst of real work runs held and its device time covers that work (a product that
// takes milliseconds, not the microseconds of an empty stream); a burst whose queueing waits on the
// device (a host read) cannot run held, and says so instead of returning a time.
#include "kernels/device_burst.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(DeviceBurst, CpuRunsTheBurstOnceWithoutDeviceTime) {
  int queued = 0;
  const BurstTime t = time_held_burst([&] { ++queued; }, torch::Device(torch::kCPU));
  EXPECT_EQ(queued, 1);
  EXPECT_FALSE(t.device_ms.has_value());
  EXPECT_GE(t.queue_ms, 0.0);
}

TEST(GpuDeviceBurst, HeldBurstTimesTheWorkAndAHostReadIsNotHeld) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: this check runs on the GPU machine";
  const torch::Device cuda(torch::kCUDA);
  torch::manual_seed(5);
  const torch::Tensor a = torch::randn({4096, 4096}, torch::TensorOptions().device(cuda));
  torch::Tensor out;
  const auto products = [&] {
    for (int i = 0; i < 20; ++i) out = torch::mm(a, a);
  };
  products();  // cuBLAS's handle and workspace before the timed bursts
  torch::cuda::synchronize();
  const BurstTime work = time_held_burst(products, cuda);
  ASSERT_TRUE(work.device_ms.has_value());
  // 20 fp32 products of 4096^3 (2.7 TFLOP) take milliseconds on any GPU; the device time is the
  // work's, so it exceeds the host's queueing of it.
  EXPECT_GT(*work.device_ms, 1.0);
  EXPECT_GT(*work.device_ms, work.queue_ms);
  EXPECT_TRUE(torch::allclose(out, torch::mm(a, a)));
  // The host waits for a value the held device has not made: the gate gives up, no device time.
  const BurstTime read = time_held_burst([&] { (void)torch::mm(a, a).sum().item<float>(); }, cuda);
  EXPECT_FALSE(read.device_ms.has_value());
  EXPECT_GT(read.queue_ms, 100.0);  // the read waited for the gate's limit (250 ms)
}

}  // namespace
}  // namespace lb
