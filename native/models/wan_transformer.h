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
#include "core/weight_transfer.h"

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
  at::Tensor normQ, normK;  // RMSNorm weights over the full inner dim (model dtype)
};

struct WanBlockWeights {
  WanAttentionWeights selfAttn, crossAttn;  // attn1, attn2
  at::Tensor norm2Weight, norm2Bias;        // cross-attention LayerNorm (float32; undefined without cross_attn_norm)
  WanLinear ffnIn, ffnOut;                  // ffn.net.0.proj, ffn.net.2
  at::Tensor scaleShiftTable;               // [1, 6, dim] float32
};

// The layers around the blocks: patch and condition embedders, output head.
struct WanOuterWeights {
  at::Tensor patchWeight;  // Conv3d kernel flattened: [dim, Cin * pt * ph * pw]
  at::Tensor patchBias;
  WanLinear timeLinear1, timeLinear2;  // float32
  WanLinear timeProj;                  // [6 * dim, dim]
  WanLinear textLinear1, textLinear2;
  WanLinear projOut;
  at::Tensor scaleShiftTable;  // [1, 2, dim] float32
};

// Where the weights live between forwards (the `offload` option).
enum class WeightPlacement {
  Resident,   // 'none': every weight on the device
  Offloaded,  // 'model': host memory; upload() puts a copy of all of them on the device, release() drops it
  Streamed,   // 'sequential': outer layers on the device; each block visits it during forward(),
              // the next one uploading while the current one runs
};

class WanTransformer {
 public:
  // Loads `dir` (config.json + safetensors, sharded or not) in `dtype` onto `device`. `ctx` (may
  // be null) is checked for cancellation before each tensor.
  static std::unique_ptr<WanTransformer> load(const std::string& dir, at::ScalarType dtype, at::Device device, const RunContext* ctx = nullptr);
  // Reads every weight from `weights` (shape-checked) and calls weights.finish().
  WanTransformer(const TransformerConfig& config, WeightSource& weights);

  // hidden [B, Cin, F, H, W]; timestep [B] (or one value for all, [1] or []) or per-token [B, seq];
  // context [B, L, textDim]. Returns [B, Cout, F, H, W] float32 on the model's device.
  at::Tensor forward(const at::Tensor& hidden, const at::Tensor& timestep, const at::Tensor& context,
                     TransformerDebug* debug = nullptr, const RunContext* ctx = nullptr) const;
  // forward() once per context over the same hidden states and timestep (CFG's conditional and
  // unconditional passes), each result bit-identical to its forward(). When the blocks stream
  // (Streamed, or Offloaded without upload()), each block visits the device once for all the
  // passes, which run it one after another: the transfers are paid once per step, not per pass,
  // for one more [B, seq, dim] hidden state held per extra pass. Otherwise the passes run whole,
  // one after the other, holding nothing extra.
  std::vector<at::Tensor> forwardEach(const at::Tensor& hidden, const at::Tensor& timestep, const std::vector<at::Tensor>& contexts,
                                      const RunContext* ctx = nullptr) const;

  const TransformerConfig& config() const { return config_; }
  int64_t parameterCount() const;
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  // Resident: every weight on `device` (a synchronous move).
  void to(at::Device device);
  // Offloaded: every weight in host memory (pinned when `device` is a GPU), computing on `device`.
  // A forward() without upload() streams the blocks like Streamed. `uploads` (uploading to `device`;
  // a new one when null): models that take turns on a device share one, because the caching
  // allocator reuses a dropped upload's memory only for later allocations on the same stream.
  // `ctx` (may be null): checked before each weight's host copy (minutes for an A14B expert); an
  // aborted model is left half-moved and must be discarded.
  void offload(at::Device device, std::shared_ptr<UploadStream> uploads = nullptr, const RunContext* ctx = nullptr);
  // Offloaded: starts copying every weight to the device on a side stream and returns; forward()
  // waits block by block, so the first forward overlaps the rest of the upload. No-op otherwise.
  void upload();
  // Offloaded: drops the device copy (after the device's queued work, so its memory is free).
  void release();
  // Streamed: blocks in (pinned) host memory visit `device` one at a time during forward(), the
  // next one prefetched on a side stream while the current one runs; the outer layers stay there.
  // At most three blocks are on the device at once. `uploads` and `ctx`: as for offload().
  void streamBlocks(at::Device device, std::shared_ptr<UploadStream> uploads = nullptr, const RunContext* ctx = nullptr);
  WeightPlacement placement() const { return placement_; }
  // Bytes of weights held on the compute device between forwards (Resident: all; Offloaded: all
  // after upload(), none after release(); Streamed: the outer layers).
  int64_t deviceWeightBytes() const;
  // Bytes uploaded to the device since the placement began (0 when Resident); shared with the
  // models that share the UploadStream.
  int64_t uploadedBytes() const { return uploader_ ? uploader_->uploadedBytes() : 0; }

  // The SDPA backend libtorch chose for the last forward's self-attention ("flash_attention",
  // "cudnn_attention", "efficient_attention", "math"; "chunked_fallback" on libtorch 1.x; empty
  // before the first forward).
  std::string selfAttentionBackend() const;

  // RoPE rotations for a grid of (frames, height, width) patches: cos + i sin [seq, headDim/2]
  // complex64 (float32 parts), one entry per interleaved pair.
  at::Tensor ropeTable(int64_t frames, int64_t height, int64_t width) const;

 private:
  void forEachWeight(const std::function<void(at::Tensor&)>& fn);
  static void forEachOuterWeight(WanOuterWeights& o, const std::function<void(at::Tensor&)>& fn);
  static void forEachBlockWeight(WanBlockWeights& b, const std::function<void(at::Tensor&)>& fn);
  // Moves every weight to host memory (packed and pinned for a GPU) and computes on `device`.
  void keepOnHost(at::Device device, std::shared_ptr<UploadStream> uploads, const RunContext* ctx);
  at::Tensor attention(const WanAttentionWeights& w, const at::Tensor& x, const at::Tensor& context,
                       const at::Tensor* rope, std::string* backend = nullptr, const RunContext* ctx = nullptr) const;
  // forward() of one pass per context, the passes interleaved block by block (see forwardEach).
  std::vector<at::Tensor> forwardPasses(const at::Tensor& hidden, const at::Tensor& timestep, const std::vector<at::Tensor>& contexts,
                                        TransformerDebug* debug, const RunContext* ctx) const;
  bool streamsBlocks() const;
  at::Tensor block(const WanBlockWeights& w, const at::Tensor& x, const at::Tensor& context, const at::Tensor& timestepProj,
                   const at::Tensor& rope, std::string* selfAttentionBackend = nullptr, const RunContext* ctx = nullptr) const;

  TransformerConfig config_;
  at::ScalarType dtype_;
  at::Device device_;  // where forward() computes
  WeightPlacement placement_ = WeightPlacement::Resident;
  // The RoPE table of the last grid (frames, height, width) forward() saw.
  struct RopeCache {
    std::array<int64_t, 3> key{-1, -1, -1};
    at::Tensor table;
  };
  mutable RopeCache ropeCache_;
  // What forward() keeps between calls: the RoPE table above and the SDPA backend it saw last.
  mutable std::mutex forwardStateMutex_;
  mutable std::string selfAttentionBackend_;
  // The weights where they live: on the device when Resident, in host memory otherwise.
  WanOuterWeights outer_;
  std::vector<WanBlockWeights> blocks_;
  // Offloaded / Streamed: the device copies and the uploads they wait on (the outer layers; every
  // block too after upload()).
  struct DeviceCopy {
    WanOuterWeights outer;
    Upload outerUpload;
    std::vector<WanBlockWeights> blocks;
    std::vector<Upload> blockUploads;
  };
  std::shared_ptr<UploadStream> uploader_;
  std::unique_ptr<DeviceCopy> onDevice_;
  // A device copy holding the outer layers, their upload started.
  std::unique_ptr<DeviceCopy> uploadOuter() const;
};

}  // namespace wan
