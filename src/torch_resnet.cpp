// torch_resnet.cpp - CLIP's ResNet image tower (see torch_resnet.h).
//
// The architecture, as OpenAI's clip/model.py defines ModifiedResNet:
//   stem: three 3x3 convolutions (3 -> w/2 stride 2, w/2 -> w/2, w/2 -> w),
//         each with batch norm and ReLU, then a 2x2 average pool;
//   stages 1-4 of bottleneck blocks, widths w, 2w, 4w, 8w (out: 4x that);
//         the first block of stages 2-4 halves the grid with an average
//         pool after its 3x3 convolution (anti-aliased striding), and a
//         block whose input differs from its output (first of each stage)
//         has a downsample branch: average pool (when strided), 1x1
//         convolution, batch norm;
//   attention pool: the 32w-channel grid flattened, its mean prepended,
//         positions added, one multi-head attention with the mean token as
//         the only query, output projection to D.
// Leaves out: training (batch norms run on their running statistics only).

#include "torch_resnet.h"

#include <cmath>

namespace cs_resnet {

namespace {

const double kBnEps = 1e-5; // torch.nn.BatchNorm2d's default, which the reference uses

// A convolution with its batch norm folded in: y = conv(x, w) + b.
struct ConvBn {
    torch::Tensor w, b; // [O, I, k, k], [O]
    int64_t stride = 1, pad = 0;
};

struct Bottleneck {
    ConvBn c1, c2, c3, down; // 1x1, 3x3, 1x1 (x4 width), downsample 1x1
    bool has_down = false;
    int64_t stride = 1; // the average pool after c2 (and before down)
};

std::string stage_prefix(int stage, int block) {
    return "visual.layer" + std::to_string(stage + 1) + "." + std::to_string(block) + ".";
}

// Calls f(prefix, in, planes, stride) for every block, in order, as
// _make_layer builds them: the first block of a stage takes the previous
// stage's output (4x its planes) and strides for stages 2-4.
template <typename F> void for_each_block(const cs_clip_config &c, F f) {
    int64_t in = c.vision_width;
    for (int s = 0; s < CS_CLIP_RESNET_STAGES; s++) {
        const int64_t planes = (int64_t)c.vision_width << s;
        for (int b = 0; b < c.vision_stages[s]; b++) {
            f(stage_prefix(s, b), b == 0 ? in : planes * 4, planes, b == 0 && s > 0 ? 2 : 1);
        }
        in = planes * 4;
    }
}

void expect_bn(const ExpectFn &expect, const std::string &p, int64_t ch) {
    for (const char *n : {"weight", "bias", "running_mean", "running_var"}) expect(p + n, {ch});
}

ConvBn fold(const GetFn &get, const std::string &conv, const std::string &bn, int64_t stride,
            int64_t pad, at::ScalarType dtype, bool channels_last) {
    torch::Tensor w = get(conv + "weight");
    torch::Tensor scale = get(bn + "weight") / torch::sqrt(get(bn + "running_var") + kBnEps);
    ConvBn r;
    r.w = (w * scale.view({-1, 1, 1, 1})).to(dtype);
    if (channels_last) r.w = r.w.contiguous(at::MemoryFormat::ChannelsLast);
    r.b = (get(bn + "bias") - get(bn + "running_mean") * scale).to(dtype);
    r.stride = stride;
    r.pad = pad;
    return r;
}

torch::Tensor conv(const torch::Tensor &x, const ConvBn &c) {
    return torch::conv2d(x, c.w, c.b, c.stride, c.pad);
}

} // namespace

struct Tower {
    ConvBn stem[3];
    std::vector<Bottleneck> blocks;
    std::vector<size_t> stage_end; // blocks[stage_end[s] - 1] ends stage s
    torch::Tensor pos;             // [g*g+1, C]
    torch::Tensor q_w, q_b;        // [C, C], [C]: pre-scaled by 1/sqrt(C/heads)
    torch::Tensor kv_w, kv_b;      // [2C, C], [2C]: k and v stacked, one GEMM
    torch::Tensor c_w, c_b;        // [D, C], [D]
    int heads = 1;
    bool channels_last = false;
};

bool is_tower_weight(const std::string &name) {
    return name.rfind("visual.", 0) == 0;
}

void expect_weights(const cs_clip_config &c, const ExpectFn &expect) {
    const int64_t w = c.vision_width, half = w / 2, pool = w * CS_CLIP_RESNET_REDUCTION;
    const int64_t g = c.image_size / CS_CLIP_RESNET_REDUCTION;
    expect("visual.conv1.weight", {half, 3, 3, 3});
    expect_bn(expect, "visual.bn1.", half);
    expect("visual.conv2.weight", {half, half, 3, 3});
    expect_bn(expect, "visual.bn2.", half);
    expect("visual.conv3.weight", {w, half, 3, 3});
    expect_bn(expect, "visual.bn3.", w);
    for_each_block(c, [&](const std::string &p, int64_t in, int64_t planes, int64_t stride) {
        expect(p + "conv1.weight", {planes, in, 1, 1});
        expect_bn(expect, p + "bn1.", planes);
        expect(p + "conv2.weight", {planes, planes, 3, 3});
        expect_bn(expect, p + "bn2.", planes);
        expect(p + "conv3.weight", {planes * 4, planes, 1, 1});
        expect_bn(expect, p + "bn3.", planes * 4);
        if (stride > 1 || in != planes * 4) {
            expect(p + "downsample.0.weight", {planes * 4, in, 1, 1});
            expect_bn(expect, p + "downsample.1.", planes * 4);
        }
    });
    expect("visual.attnpool.positional_embedding", {g * g + 1, pool});
    for (const char *n : {"q_proj", "k_proj", "v_proj"}) {
        expect(std::string("visual.attnpool.") + n + ".weight", {pool, pool});
        expect(std::string("visual.attnpool.") + n + ".bias", {pool});
    }
    expect("visual.attnpool.c_proj.weight", {c.embed_dim, pool});
    expect("visual.attnpool.c_proj.bias", {c.embed_dim});
}

std::shared_ptr<const Tower> build(const cs_clip_config &c, const GetFn &get, at::ScalarType dtype,
                                   bool channels_last) {
    auto t = std::make_shared<Tower>();
    t->channels_last = channels_last;
    t->heads = c.vision_heads;
    for (int i = 0; i < 3; i++) {
        std::string n = std::to_string(i + 1);
        t->stem[i] = fold(get, "visual.conv" + n + ".", "visual.bn" + n + ".", i == 0 ? 2 : 1, 1,
                          dtype, channels_last);
    }
    for_each_block(c, [&](const std::string &p, int64_t in, int64_t planes, int64_t stride) {
        Bottleneck b;
        b.stride = stride;
        b.c1 = fold(get, p + "conv1.", p + "bn1.", 1, 0, dtype, channels_last);
        b.c2 = fold(get, p + "conv2.", p + "bn2.", 1, 1, dtype, channels_last);
        b.c3 = fold(get, p + "conv3.", p + "bn3.", 1, 0, dtype, channels_last);
        b.has_down = stride > 1 || in != planes * 4;
        if (b.has_down)
            b.down =
                fold(get, p + "downsample.0.", p + "downsample.1.", 1, 0, dtype, channels_last);
        t->blocks.push_back(std::move(b));
    });
    size_t end = 0;
    for (int s = 0; s < CS_CLIP_RESNET_STAGES; s++)
        t->stage_end.push_back(end += (size_t)c.vision_stages[s]);
    const int64_t pool = (int64_t)c.vision_width * CS_CLIP_RESNET_REDUCTION;
    // As nn.MultiheadAttention: q scaled by 1/sqrt(head width) after its
    // projection, bias included, so folding it into both is exact.
    const double qs = 1.0 / std::sqrt((double)(pool / c.vision_heads));
    auto a = [&](const char *n) { return get(std::string("visual.attnpool.") + n); };
    t->pos = a("positional_embedding").to(dtype);
    t->q_w = (a("q_proj.weight") * qs).to(dtype);
    t->q_b = (a("q_proj.bias") * qs).to(dtype);
    t->kv_w = torch::cat({a("k_proj.weight"), a("v_proj.weight")}, 0).to(dtype);
    t->kv_b = torch::cat({a("k_proj.bias"), a("v_proj.bias")}, 0).to(dtype);
    t->c_w = a("c_proj.weight").to(dtype);
    t->c_b = a("c_proj.bias").to(dtype);
    return t;
}

torch::Tensor forward(const Tower &t, torch::Tensor x, const TraceFn &trace) {
    if (t.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    for (const ConvBn &s : t.stem) x = conv(x, s).relu_();
    x = torch::avg_pool2d(x, 2);
    if (trace) trace("stem", x);
    size_t stage = 0;
    for (size_t i = 0; i < t.blocks.size(); i++) {
        const Bottleneck &b = t.blocks[i];
        torch::Tensor h = conv(x, b.c1).relu_();
        h = conv(h, b.c2).relu_();
        if (b.stride > 1) h = torch::avg_pool2d(h, b.stride);
        h = conv(h, b.c3);
        if (b.has_down)
            h.add_(conv(b.stride > 1 ? torch::avg_pool2d(x, b.stride) : x, b.down));
        else
            h.add_(x);
        x = torch::relu_(h);
        if (i + 1 == t.stage_end[stage]) {
            if (trace) trace(("layer" + std::to_string(stage + 1)).c_str(), x);
            stage++;
        }
    }
    // Attention pool: [N, C, g, g] -> tokens [N, 1 + g*g, C], the mean first.
    const int64_t n = x.size(0), ch = x.size(1), heads = t.heads, hd = ch / heads;
    torch::Tensor tok = x.flatten(2).transpose(1, 2);      // [N, L-1, C]
    tok = torch::cat({tok.mean(1, true), tok}, 1) + t.pos; // [N, L, C]
    const int64_t l = tok.size(1);
    torch::Tensor q = torch::linear(tok.select(1, 0), t.q_w, t.q_b) // [N, C]
                          .view({n, heads, 1, hd});
    torch::Tensor kv = torch::linear(tok, t.kv_w, t.kv_b) // [N, L, 2C]
                           .view({n, l, 2, heads, hd})
                           .permute({2, 0, 3, 1, 4}); // [2, N, H, L, hd]
    torch::Tensor p = torch::softmax(torch::matmul(q, kv[0].transpose(-1, -2)), -1); // [N, H, 1, L]
    torch::Tensor o = torch::matmul(p, kv[1]).reshape({n, ch});                      // [N, C]
    if (trace) trace("attnpool", o);
    torch::Tensor y = torch::linear(o, t.c_w, t.c_b); // [N, D]
    if (trace) trace("proj", y);
    return y;
}

} // namespace cs_resnet
