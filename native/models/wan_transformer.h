// The Wan DiT (Diffusers WanTransformer3DModel): patchify, 3-axis RoPE, N blocks of
// self-attention / cross-attention / FFN with six-way timestep modulation, output head, unpatchify.
// Compute dtypes follow the reference: matmuls in the weight dtype, layer norms, modulation and RoPE
// in float32; time_embedder, norm weights and scale_shift_tables are kept in float32 (Diffusers'
// _keep_in_fp32_modules). One object serves every size (A14B expert, TI2V-5B, tiny fixtures).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/model_config.h"
#include "core/run_context.h"
#include "core/tensor_io.h"

namespace wan {

// Intermediates of one forward, named like the fixtures (rope_cos, rope_sin, patch_embedding,
// temb, timestep_proj, block_N_out), in their reference layouts.
struct TransformerDebug {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  void add(const std::string& name, const at::Tensor& t) { tensors.emplace_back(name, t.detach().clone()); }
};

struct WanLinear {
  at::Tensor weight, bias;  // [out, in], [out]
  at::Tensor operator()(const at::Tensor& x) const { return at::linear(x, weight, bias); }
};

struct WanAttentionWeights {
  WanLinear toQ, toK, toV, toOut;
  at::Tensor normQ, normK;  // RMSNorm weights over the full inner dim (float32)
};

struct WanBlockWeights {
  WanAttentionWeights selfAttn, crossAttn;  // attn1, attn2
  at::Tensor norm2Weight, norm2Bias;        // cross-attention LayerNorm (float32; undefined without cross_attn_norm)
  WanLinear ffnIn, ffnOut;                  // ffn.net.0.proj, ffn.net.2
  at::Tensor scaleShiftTable;               // [1, 6, dim] float32
};

class WanTransformer {
 public:
  // Loads `dir` (config.json + safetensors, sharded or not) in `dtype` onto `device`.
  static std::unique_ptr<WanTransformer> load(const std::string& dir, at::ScalarType dtype, at::Device device);
  // Reads every weight from `weights` (shape-checked) and calls weights.finish().
  WanTransformer(const TransformerConfig& config, WeightSource& weights);

  // hidden [B, Cin, F, H, W]; timestep [B] (or one value for all, [1] or []) or per-token [B, seq];
  // context [B, L, textDim]. Returns [B, Cout, F, H, W] float32 on the model's device.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& timestep, const at::Tensor& context,
                     TransformerDebug* debug = nullptr, const RunContext* ctx = nullptr) const;

  const TransformerConfig& config() const { return config_; }
  int64_t parameterCount() const;
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  // Moves every weight to `device` (offload between CPU and GPU); ends block streaming.
  void to(at::Device device);
  // Block-by-block streaming for GPUs far smaller than the model ('sequential' offload): the
  // blocks stay in (pinned) host memory and visit `device` one at a time during forward(); the
  // small outer layers live on `device`.
  void streamBlocks(at::Device device);
  bool streaming() const { return streaming_; }

  // RoPE tables for a grid of (frames, height, width) patches: cos and sin [seq, headDim/2] float32,
  // one entry per interleaved pair.
  std::pair<at::Tensor, at::Tensor> ropeTables(int64_t frames, int64_t height, int64_t width) const;

 private:
  void forEachWeight(const std::function<void(at::Tensor&)>& fn);
  void forEachOuterWeight(const std::function<void(at::Tensor&)>& fn);
  static void forEachBlockWeight(WanBlockWeights& b, const std::function<void(at::Tensor&)>& fn);
  at::Tensor attention(const WanAttentionWeights& w, const at::Tensor& x, const at::Tensor& context,
                       const at::Tensor* ropeCos, const at::Tensor* ropeSin) const;
  at::Tensor block(const WanBlockWeights& w, const at::Tensor& x, const at::Tensor& context, const at::Tensor& timestepProj,
                   const at::Tensor& ropeCos, const at::Tensor& ropeSin) const;

  TransformerConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  bool streaming_ = false;
  // The RoPE tables of the last grid (frames, height, width) forward() saw.
  struct RopeCache {
    std::array<int64_t, 3> key{-1, -1, -1};
    at::Tensor cos, sin;
  };
  mutable RopeCache ropeCache_;
  mutable std::mutex ropeCacheMutex_;
  at::Tensor patchWeight;  // Conv3d kernel flattened: [dim, Cin * pt * ph * pw]
  at::Tensor patchBias;
  WanLinear timeLinear1, timeLinear2;  // float32
  WanLinear timeProj;                  // [6 * dim, dim]
  WanLinear textLinear1, textLinear2;
  std::vector<WanBlockWeights> blocks_;
  WanLinear projOut;
  at::Tensor scaleShiftTable;  // [1, 2, dim] float32
};

}  // namespace wan
