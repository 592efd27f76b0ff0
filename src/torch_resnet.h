// torch_resnet.h - the ResNet image tower of CLIP (OpenAI's ModifiedResNet:
// RN50, RN101, RN50x4, RN50x16, RN50x64) for the torch shim. C++ only,
// internal: torch_shim.cpp is its one user.
//
// Covers: the weights the tower needs (names and shapes under OpenAI's
// names), folding each batch norm into the convolution before it once the
// weights are in, and the forward pass (stem, bottleneck stages, attention
// pool, projection). Leaves out: weight transport, devices, errors and the
// C boundary (torch_shim.cpp, which catches what this throws), the text
// tower.
#ifndef CLIPSCORE_TORCH_RESNET_H
#define CLIPSCORE_TORCH_RESNET_H

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clip_config.h"

namespace cs_resnet {

struct Tower; // the folded weights, ready for forward()

// Called once per weight the tower reads: its name and shape.
using ExpectFn = std::function<void(const std::string &, std::vector<int64_t>)>;
// The weight under a name given to ExpectFn, float32, on the model's device.
using GetFn = std::function<torch::Tensor(const std::string &)>;
// Sees each stage's activations (may be empty: no tracing).
using TraceFn = std::function<void(const char *, const torch::Tensor &)>;

// True for the names the tower reads (every "visual." weight of a ResNet
// CLIP): the shim keeps them in float32 until build() has folded them.
bool is_tower_weight(const std::string &name);

void expect_weights(const cs_clip_config &c, const ExpectFn &expect);

// Folds the batch norms (running statistics, eps 1e-5) into the
// convolutions and the attention scale into the query projection, all in
// float32, then casts to dtype. channels_last: weights and activations in
// NHWC, which libtorch's oneDNN (CPU) and cuDNN (CUDA, tensor cores in
// fp16) convolutions prefer: on the CPU, RN50's image tower ran 1.3x faster
// than in NCHW (bench/README.md).
std::shared_ptr<const Tower> build(const cs_clip_config &c, const GetFn &get, at::ScalarType dtype,
                                   bool channels_last);

// x [N, 3, R, R] in the tower's dtype, on its device -> [N, D]. Stages seen
// by trace: "stem" [N, w, R/4, R/4], "layer1" ... "layer4" (after each
// stage), "attnpool" (the mean token's attention output before the output
// projection, [N, 32w]), "proj" ([N, D]).
torch::Tensor forward(const Tower &t, torch::Tensor x, const TraceFn &trace);

} // namespace cs_resnet

#endif
