#include "scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#include "core/errors.h"

namespace wan {

namespace {

constexpr int64_t kMaxSteps = 10000;

// a * b rounded on its own, as numpy's separate array ops do (never fused into a multiply-add).
double roundedProduct(double a, double b) {
  volatile double p = a * b;
  return p;
}

// numpy.linspace(start, stop, n + 1)[:-1]: element i is i * ((stop - start) / n) + start.
std::vector<double> linspaceWithoutLast(double start, double stop, int64_t n) {
  const double step = (stop - start) / static_cast<double>(n);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = roundedProduct(static_cast<double>(i), step) + start;
  return out;
}

// sigma = shift*s / (1 + (shift-1)*s) in float64, then timesteps = int64(sigma*T) (truncation) and
// float32 sigmas with a final 0.
FlowSigmaGrid shiftedGrid(std::vector<double> s, double shift, int64_t numTrainTimesteps, bool nudgeFirstBelowOne) {
  for (double& v : s) v = roundedProduct(shift, v) / (1.0 + roundedProduct(shift - 1.0, v));
  // diffusers keeps sigma[0] off 1 so that log(1 - sigma) stays finite.
  if (nudgeFirstBelowOne && !s.empty() && std::fabs(s[0] - 1.0) < 1e-6) s[0] -= 1e-6;
  FlowSigmaGrid grid;
  for (double v : s) {
    grid.timesteps.push_back(static_cast<int64_t>(roundedProduct(v, static_cast<double>(numTrainTimesteps))));
    grid.sigmas.push_back(static_cast<float>(v));
  }
  grid.sigmas.push_back(0.0f);
  return grid;
}

// lambda = log(alpha) - log(sigma), alpha = 1 - sigma, in float32 like the reference's 0-d tensors.
float flowLambda(float sigma) {
  const float alpha = 1.0f - sigma;
  return std::log(alpha) - std::log(sigma);
}

// Solves [[1, 1], [rk, 1]] rho = b in float32 by LU with partial pivoting (what linalg.solve does).
std::array<float, 2> solveCorrector2x2(float rk, float b0, float b1) {
  float a00 = 1.0f, a01 = 1.0f, a10 = rk, a11 = 1.0f;
  if (std::fabs(a10) > std::fabs(a00)) {
    std::swap(a00, a10);
    std::swap(a01, a11);
    std::swap(b0, b1);
  }
  const float l = a10 * (1.0f / a00);
  const float u11 = a11 - l * a01;
  const float y1 = b1 - l * b0;
  const float rho1 = y1 / u11;
  const float rho0 = (b0 - a01 * rho1) / a00;
  return {rho0, rho1};
}

std::string shapeText(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

}  // namespace

FlowSigmaGrid diffusersFlowSigmas(int64_t steps, double shift, int64_t numTrainTimesteps) {
  const double T = static_cast<double>(numTrainTimesteps);
  return shiftedGrid(linspaceWithoutLast(1.0, 1.0 / T, steps), shift, numTrainTimesteps, true);
}

FlowSigmaGrid officialWanFlowSigmas(int64_t steps, double shift, int64_t numTrainTimesteps) {
  // The official scheduler is built with shift=1 over T training sigmas 1 - linspace(1, 1/T, T)
  // reversed, stored in float32; set_timesteps spans [sigmas[0], sigmas[-1]] = [f32(1 - 1/T), 0].
  const double T = static_cast<double>(numTrainTimesteps);
  const double sigmaMax = static_cast<double>(static_cast<float>(1.0 - 1.0 / T));
  return shiftedGrid(linspaceWithoutLast(sigmaMax, 0.0, steps), shift, numTrainTimesteps, false);
}

std::pair<at::Tensor, at::Tensor> Scheduler::prepareStep(const at::Tensor& modelOutput, const at::Tensor& sample) const {
  if (stepIndex_ >= numSteps())
    throwBadArgument("scheduler: all " + std::to_string(numSteps()) + " steps have run; reset() it to start again");
  if (!sample.defined() || !sample.is_floating_point()) throwBadArgument("scheduler: the sample must be a floating-point tensor");
  if (!modelOutput.defined() || !modelOutput.is_floating_point())
    throwBadArgument("scheduler: the model output must be a floating-point tensor");
  if (modelOutput.sizes() != sample.sizes())
    throwBadArgument("scheduler: the model output has shape " + shapeText(modelOutput.sizes()) + " but the sample has " +
                     shapeText(sample.sizes()));
  const at::ScalarType compute = sample.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return {modelOutput.to(sample.device(), compute), sample.to(compute)};
}

UniPCFlowScheduler::UniPCFlowScheduler(FlowSigmaGrid grid, const SchedulerConfig& config)
    : Scheduler(std::move(grid)),
      solverOrder_(config.solverOrder),
      bh2_(config.solverType != "bh1"),
      lowerOrderFinal_(config.lowerOrderFinal),
      disableCorrector_(config.disableCorrector) {}

void UniPCFlowScheduler::reset() {
  Scheduler::reset();
  x0Preds_.clear();
  lastSample_ = at::Tensor();
  lowerOrderNums_ = 0;
  thisOrder_ = 0;
}

at::Tensor UniPCFlowScheduler::predict(const at::Tensor& x, int64_t order) const {
  const auto& sigmas = grid_.sigmas;
  const size_t i = static_cast<size_t>(stepIndex_);
  const float sigmaT = sigmas[i + 1], sigmaS0 = sigmas[i];
  const float alphaT = 1.0f - sigmaT;
  const float lambdaS0 = flowLambda(sigmaS0);
  const float h = flowLambda(sigmaT) - lambdaS0;
  const float hh = -h;  // predict_x0
  const float hPhi1 = std::expm1(hh);
  const float bH = bh2_ ? std::expm1(hh) : hh;
  const at::Tensor& m0 = x0Preds_.back();
  at::Tensor xT = x * static_cast<double>(sigmaT / sigmaS0) - m0 * static_cast<double>(alphaT * hPhi1);
  if (order == 2) {
    const float rk = (flowLambda(sigmas[i - 1]) - lambdaS0) / h;
    at::Tensor d1 = (x0Preds_[x0Preds_.size() - 2] - m0) / static_cast<double>(rk);
    at::Tensor predRes = d1 * 0.5;  // rhos_p = [0.5] for order 2
    xT = xT - predRes * static_cast<double>(alphaT * bH);
  }
  return xT;
}

at::Tensor UniPCFlowScheduler::correct(const at::Tensor& x0AtT, int64_t order) const {
  const auto& sigmas = grid_.sigmas;
  const size_t i = static_cast<size_t>(stepIndex_);
  const float sigmaT = sigmas[i], sigmaS0 = sigmas[i - 1];
  const float alphaT = 1.0f - sigmaT;
  const float lambdaS0 = flowLambda(sigmaS0);
  const float h = flowLambda(sigmaT) - lambdaS0;
  const float hh = -h;
  const float hPhi1 = std::expm1(hh);
  const float bH = bh2_ ? std::expm1(hh) : hh;
  const at::Tensor& m0 = x0Preds_.back();
  at::Tensor xT = lastSample_ * static_cast<double>(sigmaT / sigmaS0) - m0 * static_cast<double>(alphaT * hPhi1);
  at::Tensor d1T = x0AtT - m0;
  at::Tensor correction;
  if (order == 1) {
    correction = d1T * 0.5;  // rhos_c = [0.5] for order 1
  } else {
    const float rk = (flowLambda(sigmas[i - 2]) - lambdaS0) / h;
    at::Tensor d1 = (x0Preds_[x0Preds_.size() - 2] - m0) / static_cast<double>(rk);
    // b_k = h_phi_k * k! / B(h), with h_phi_1 = expm1(hh)/hh - 1 and h_phi_2 = h_phi_1/hh - 1/2.
    const float hPhiK1 = hPhi1 / hh - 1.0f;
    const float hPhiK2 = hPhiK1 / hh - 0.5f;
    const std::array<float, 2> rho = solveCorrector2x2(rk, hPhiK1 / bH, hPhiK2 * 2.0f / bH);
    correction = d1 * static_cast<double>(rho[0]) + d1T * static_cast<double>(rho[1]);
  }
  return xT - correction * static_cast<double>(alphaT * bH);
}

at::Tensor UniPCFlowScheduler::step(const at::Tensor& modelOutput, const at::Tensor& sample) {
  auto [v, x] = prepareStep(modelOutput, sample);
  const int64_t i = stepIndex_;
  at::Tensor x0 = x - v * static_cast<double>(grid_.sigmas[static_cast<size_t>(i)]);  // flow_prediction
  const bool disabled = std::find(disableCorrector_.begin(), disableCorrector_.end(), i - 1) != disableCorrector_.end();
  if (i > 0 && !disabled && lastSample_.defined()) x = correct(x0, thisOrder_);

  x0Preds_.push_back(x0);
  if (static_cast<int64_t>(x0Preds_.size()) > solverOrder_) x0Preds_.pop_front();
  // lower_order_final: the last step is first order; the first steps warm up one order at a time.
  const int64_t order = lowerOrderFinal_ ? std::min(solverOrder_, numSteps() - i) : solverOrder_;
  thisOrder_ = std::min(order, lowerOrderNums_ + 1);

  lastSample_ = x;
  at::Tensor next = predict(x, thisOrder_);
  if (lowerOrderNums_ < solverOrder_) ++lowerOrderNums_;
  ++stepIndex_;
  return next.to(sample.scalar_type());
}

at::Tensor FlowEulerScheduler::step(const at::Tensor& modelOutput, const at::Tensor& sample) {
  auto [v, x] = prepareStep(modelOutput, sample);
  const size_t i = static_cast<size_t>(stepIndex_);
  const float dt = grid_.sigmas[i + 1] - grid_.sigmas[i];
  ++stepIndex_;
  return (x + v * static_cast<double>(dt)).to(sample.scalar_type());
}

void validateSchedulerConfig(const SchedulerConfig& c, const std::string& sampler) {
  const std::string file = c.path.empty() ? std::string("scheduler config") : c.path;
  auto reject = [&](const std::string& field, const std::string& what) {
    throwBadCheckpoint(file + ": field '" + field + "' " + what);
  };
  auto unsupportedTrue = [&](const char* field, bool value) {
    if (value) reject(field, "is true; not supported by wan-video's samplers (must be false)");
  };
  if (c.className != "UniPCMultistepScheduler")
    reject("_class_name", "is '" + c.className + "'; only 'UniPCMultistepScheduler' configs (Wan2.2 Diffusers) are supported");
  if (!c.useFlowSigmas) reject("use_flow_sigmas", "is false; only flow-matching sigmas are supported (must be true)");
  if (c.predictionType != "flow_prediction")
    reject("prediction_type", "is '" + c.predictionType + "'; only 'flow_prediction' is supported");
  unsupportedTrue("use_karras_sigmas", c.useKarrasSigmas);
  unsupportedTrue("use_exponential_sigmas", c.useExponentialSigmas);
  unsupportedTrue("use_beta_sigmas", c.useBetaSigmas);
  unsupportedTrue("use_dynamic_shifting", c.useDynamicShifting);
  if (c.shiftTerminal && *c.shiftTerminal != 0) reject("shift_terminal", "is set; not supported (must be null)");
  if (c.finalSigmasType != "zero") reject("final_sigmas_type", "is '" + c.finalSigmasType + "'; only 'zero' is supported");
  if (c.timestepSpacing != "linspace" && c.timestepSpacing != "leading" && c.timestepSpacing != "trailing")
    reject("timestep_spacing", "is '" + c.timestepSpacing + "'; allowed: 'linspace', 'leading', 'trailing'");
  if (sampler == "euler") return;
  if (!c.predictX0) reject("predict_x0", "is false; only the x0-prediction UniPC update is supported (must be true)");
  // diffusers maps the DPM-Solver names midpoint/heun/logrho to bh2.
  static const char* kSolverTypes[] = {"bh1", "bh2", "midpoint", "heun", "logrho"};
  if (std::find(std::begin(kSolverTypes), std::end(kSolverTypes), c.solverType) == std::end(kSolverTypes))
    reject("solver_type", "is '" + c.solverType + "'; allowed: 'bh2', 'bh1'");
  if (c.solverOrder != 1 && c.solverOrder != 2)
    reject("solver_order", "is " + std::to_string(c.solverOrder) + "; supported: 1, 2");
  // Without lower_order_final the last step is second order towards sigma 0, where lambda is
  // infinite: diffusers then divides by rk = 0 and returns a non-finite sample.
  if (!c.lowerOrderFinal && c.solverOrder > 1)
    reject("lower_order_final", "is false; with solver_order 2 and final sigma 0 the last step is non-finite (must be true)");
  unsupportedTrue("thresholding", c.thresholding);
  if (c.hasSolverP) reject("solver_p", "is set; not supported (must be null)");
}

std::unique_ptr<Scheduler> makeScheduler(const SchedulerConfig& config, const std::string& sampler, int64_t steps,
                                         std::optional<double> shift) {
  if (sampler != "unipc" && sampler != "unipc-official" && sampler != "euler")
    throwBadArgument("option 'sampler' is '" + sampler + "'; allowed: 'unipc', 'unipc-official', 'euler'");
  if (steps < 1 || steps > kMaxSteps)
    throwBadArgument("option 'steps' is " + std::to_string(steps) + "; must be an integer from 1 to " + std::to_string(kMaxSteps));
  if (shift && !(std::isfinite(*shift) && *shift > 0)) throwBadArgument("option 'shift' must be a finite number > 0");
  validateSchedulerConfig(config, sampler);
  const double flowShift = shift.value_or(config.flowShift);
  if (sampler == "euler") return std::make_unique<FlowEulerScheduler>(diffusersFlowSigmas(steps, flowShift, config.numTrainTimesteps));
  FlowSigmaGrid grid = sampler == "unipc" ? diffusersFlowSigmas(steps, flowShift, config.numTrainTimesteps)
                                          : officialWanFlowSigmas(steps, flowShift, config.numTrainTimesteps);
  return std::make_unique<UniPCFlowScheduler>(std::move(grid), config);
}

}  // namespace wan
