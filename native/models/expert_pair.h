// The A14B mixture of experts: a high-noise expert (`transformer/`) and an optional low-noise one
// (`transformer_2/`), chosen per step by the scheduler timestep. A thin selector: it owns the two
// models and says which one a step uses; residency (offloading the idle expert) is the caller's.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "core/errors.h"
#include "wan_transformer.h"

namespace wan {

class ExpertPair {
 public:
  enum class Expert { High, Low };

  // `low` may be null (one-expert models such as TI2V-5B): every step uses `high`. With two experts,
  // `boundaryRatio` (model_index.json) is required.
  ExpertPair(std::unique_ptr<WanTransformer> high, std::unique_ptr<WanTransformer> low, std::optional<double> boundaryRatio,
             int64_t numTrainTimesteps = 1000)
      : high_(std::move(high)), low_(std::move(low)), boundaryRatio_(boundaryRatio), numTrainTimesteps_(numTrainTimesteps) {
    if (!high_) throwBadArgument("ExpertPair needs the high-noise expert (transformer/)");
    if (low_ && !boundaryRatio_)
      throwBadCheckpoint("model_index.json: 'boundary_ratio' is required when transformer_2/ (the low-noise expert) is present");
  }

  bool hasTwoExperts() const { return low_ != nullptr; }
  // Timesteps at or above this use the high-noise expert (equality counts as high noise).
  double boundaryTimestep() const { return boundaryRatio_.value_or(0.0) * static_cast<double>(numTrainTimesteps_); }

  Expert select(double timestep) const {
    if (!low_) return Expert::High;
    return timestep >= boundaryTimestep() ? Expert::High : Expert::Low;
  }
  WanTransformer& expert(Expert e) { return e == Expert::Low ? *low_ : *high_; }
  const WanTransformer& expert(Expert e) const { return e == Expert::Low ? *low_ : *high_; }
  WanTransformer& forTimestep(double timestep) { return expert(select(timestep)); }

  // Progress-event name of an expert: 'high-noise' | 'low-noise', or 'transformer' for one expert.
  const char* name(Expert e) const {
    if (!low_) return "transformer";
    return e == Expert::Low ? "low-noise" : "high-noise";
  }

 private:
  std::unique_ptr<WanTransformer> high_, low_;
  std::optional<double> boundaryRatio_;
  int64_t numTrainTimesteps_;
};

}  // namespace wan
