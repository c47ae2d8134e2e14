// Samplers of the denoising loop, all on flow-matching sigmas (x_t = (1 - sigma) x0 + sigma noise,
// model output v = noise - x0):
//   'unipc'          diffusers' UniPCMultistepScheduler as configured by scheduler_config.json
//                    (use_flow_sigmas, flow_prediction, predict_x0, bh2/bh1, UniC corrector).
//   'unipc-official' the same update on the sigma grid of the official Wan2.2 code
//                    (wan/utils/fm_solvers_unipc.py FlowUniPCMultistepScheduler).
//   'euler'          flow-matching Euler on the diffusers grid: x += (sigma_next - sigma) * v.
// Timesteps/sigmas are formed in float64 like numpy and the sigmas kept in float32, and the update
// coefficients are computed from those float32 sigmas in float32, as the references do.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model_config.h"

namespace wan {

// N timesteps (int64, what the model is given) and N+1 float32 sigmas (the last is 0).
struct FlowSigmaGrid {
  std::vector<int64_t> timesteps;
  std::vector<float> sigmas;
};

// diffusers: s = linspace(1, 1/T, N+1)[:-1]; sigma = shift*s / (1 + (shift-1)*s); sigma[0] -> 1 - 1e-6.
FlowSigmaGrid diffusersFlowSigmas(int64_t steps, double shift, int64_t numTrainTimesteps);
// Official Wan2.2: s = linspace(float32(1 - 1/T), 0, N+1)[:-1], then the same shift.
FlowSigmaGrid officialWanFlowSigmas(int64_t steps, double shift, int64_t numTrainTimesteps);

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  const std::vector<int64_t>& timesteps() const { return grid_.timesteps; }
  const std::vector<float>& sigmas() const { return grid_.sigmas; }
  int64_t numSteps() const { return static_cast<int64_t>(grid_.timesteps.size()); }
  // Index of the next step() (0 after construction or reset(), like set_begin_index(0)).
  int64_t stepIndex() const { return stepIndex_; }
  // One step: the model output for timesteps()[stepIndex()] and the current sample -> the next
  // sample, in the sample's dtype (float32 or float64; reduced floats are computed in float32).
  virtual at::Tensor step(const at::Tensor& modelOutput, const at::Tensor& sample) = 0;
  // Back to step 0 with no history, for another run on the same grid.
  virtual void reset() { stepIndex_ = 0; }

 protected:
  explicit Scheduler(FlowSigmaGrid grid) : grid_(std::move(grid)) {}
  // Checks shapes/dtypes and the step index; returns (modelOutput, sample) in the compute dtype.
  std::pair<at::Tensor, at::Tensor> prepareStep(const at::Tensor& modelOutput, const at::Tensor& sample) const;

  FlowSigmaGrid grid_;
  int64_t stepIndex_ = 0;
};

class UniPCFlowScheduler final : public Scheduler {
 public:
  UniPCFlowScheduler(FlowSigmaGrid grid, const SchedulerConfig& config);
  at::Tensor step(const at::Tensor& modelOutput, const at::Tensor& sample) override;
  void reset() override;

 private:
  // UniP: from sample x at sigmas[i] to sigmas[i+1], with x0 predictions x0Preds_ (newest last).
  at::Tensor predict(const at::Tensor& x, int64_t order) const;
  // UniC: corrects the sample at sigmas[i] given its own x0 prediction x0AtT.
  at::Tensor correct(const at::Tensor& x0AtT, int64_t order) const;

  int64_t solverOrder_;
  bool bh2_;  // B(h) = expm1(-h) (bh2) or -h (bh1)
  bool lowerOrderFinal_;
  std::vector<int64_t> disableCorrector_;

  std::deque<at::Tensor> x0Preds_;  // converted model outputs of the last solverOrder_ steps
  at::Tensor lastSample_;           // the (corrected) sample the last predictor started from
  int64_t lowerOrderNums_ = 0;      // warm-up: steps taken so far, capped at solverOrder_
  int64_t thisOrder_ = 0;           // order of the last predictor (the next corrector uses it)
};

class FlowEulerScheduler final : public Scheduler {
 public:
  explicit FlowEulerScheduler(FlowSigmaGrid grid) : Scheduler(std::move(grid)) {}
  at::Tensor step(const at::Tensor& modelOutput, const at::Tensor& sample) override;
};

// Throws ERR_WAN_BAD_CHECKPOINT naming the field for every config option these samplers do not
// implement (set to a value other than its default); `sampler` selects which options matter.
void validateSchedulerConfig(const SchedulerConfig& config, const std::string& sampler);

// sampler: 'unipc' | 'unipc-official' | 'euler'; steps >= 1; shift > 0 overrides flow_shift.
// Bad sampler options are ERR_WAN_BAD_ARGUMENT, unsupported config options ERR_WAN_BAD_CHECKPOINT.
std::unique_ptr<Scheduler> makeScheduler(const SchedulerConfig& config, const std::string& sampler, int64_t steps,
                                         std::optional<double> shift);

}  // namespace wan
