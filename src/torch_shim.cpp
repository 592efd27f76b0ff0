// torch_shim.cpp - libtorch behind a C API: weight archives and the CLIP
// image and text transformers (the project's only C++).
//
// Covers: reading torch.save'd state dicts and TorchScript archives into
// tensor views, each view checked against the bytes the file really holds
// before it is copied; the forward passes of CLIP's vision transformer (patch
// convolution, class token, positions, ln_pre, residual attention blocks,
// ln_post on the class token, projection) and text transformer (token and
// position embeddings, causal blocks, ln_final, the end token's features,
// projection), on CPU or CUDA in fp32, fp16 or bf16, with an optional
// per-stage hook for the tests (cs_torch_trace_*). The ResNet image tower
// is torch_resnet.cpp's; this file picks it when the configuration has
// ResNet stages.
// Leaves out: training, the logit scale, any Python-side preprocessing.
//
// Every entry point catches C++ exceptions and returns a status and message.

#include "torch_shim.h"
#include "torch_resnet.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include "util.h"
}

// --------------------------------------------------------------- helpers

namespace {

int fail(cs_error *e, int code, const std::string &msg) {
    return cs_fail(e, code, "%s", msg.c_str());
}

// First line of a libtorch error, without its C++ backtrace.
std::string short_what(const c10::Error &err) {
    std::string s = err.what_without_backtrace();
    size_t nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

#define SHIM_TRY try {
#define SHIM_CATCH(E_, WHAT_)                                                                      \
    }                                                                                              \
    catch (const c10::Error &err) {                                                                \
        return fail(E_, CLIPSCORE_EINTERNAL,                                                       \
                    std::string(WHAT_) + ": libtorch: " + short_what(err));                        \
    }                                                                                              \
    catch (const std::bad_alloc &) {                                                               \
        return fail(E_, CLIPSCORE_ENOMEM, std::string(WHAT_) + ": out of memory");                 \
    }                                                                                              \
    catch (const std::exception &err) {                                                            \
        return fail(E_, CLIPSCORE_EINTERNAL, std::string(WHAT_) + ": " + err.what());              \
    }                                                                                              \
    catch (...) {                                                                                  \
        return fail(E_, CLIPSCORE_EINTERNAL, std::string(WHAT_) + ": unknown C++ exception");      \
    }

bool to_cs_dtype(at::ScalarType t, cs_dtype *out) {
    switch (t) {
    case at::kFloat:
        *out = CS_DTYPE_F32;
        return true;
    case at::kHalf:
        *out = CS_DTYPE_F16;
        return true;
    case at::kBFloat16:
        *out = CS_DTYPE_BF16;
        return true;
    case at::kDouble:
        *out = CS_DTYPE_F64;
        return true;
    case at::kLong:
        *out = CS_DTYPE_I64;
        return true;
    case at::kInt:
        *out = CS_DTYPE_I32;
        return true;
    case at::kShort:
        *out = CS_DTYPE_I16;
        return true;
    case at::kChar:
        *out = CS_DTYPE_I8;
        return true;
    case at::kByte:
        *out = CS_DTYPE_U8;
        return true;
    case at::kBool:
        *out = CS_DTYPE_BOOL;
        return true;
    default:
        return false;
    }
}

bool to_torch_dtype(cs_dtype t, at::ScalarType *out) {
    switch (t) {
    case CS_DTYPE_F32:
        *out = at::kFloat;
        return true;
    case CS_DTYPE_F16:
        *out = at::kHalf;
        return true;
    case CS_DTYPE_BF16:
        *out = at::kBFloat16;
        return true;
    case CS_DTYPE_F64:
        *out = at::kDouble;
        return true;
    default:
        return false;
    }
}

std::string shape_str(at::IntArrayRef s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

} // namespace

// --------------------------------------------------------------- archives

// Reads the archive's bytes for libtorch's zip reader straight from the
// file (no second copy of the file in memory) and remembers where each
// uncompressed record was read to and how long it was. The unpickler sizes
// a storage by the element count the pickle claims, not by the record it
// read (libtorch 1.13), so these reads are what the file really holds.
class RecordingReader final : public caffe2::serialize::ReadAdapterInterface {
  public:
    RecordingReader(FILE *f, size_t size) : f_(f), size_(size) {}
    size_t size() const override {
        return size_;
    }
    size_t read(uint64_t pos, void *buf, size_t n, const char *what = "") const override {
        (void)what;
        if (pos >= size_) return 0;
        if (n > size_ - pos) n = (size_t)(size_ - pos);
        {
            // The unpickler reads a record anew for each persistent id
            // naming it: a file naming one record many times would be read
            // many times over. What torch.save and TorchScript write is
            // read about once; a short read makes the zip reader fail.
            std::lock_guard<std::mutex> lock(mu_);
            if (total_ + n > budget()) {
                over_budget_ = true;
                return 0;
            }
            total_ += n;
        }
        size_t got = 0;
        while (got < n) {
            ssize_t r = pread(fileno(f_), (char *)buf + got, n - got, (off_t)(pos + got));
            if (r <= 0) break;
            got += (size_t)r;
        }
        // A record is read whole, into the buffer that becomes its storage.
        std::lock_guard<std::mutex> lock(mu_);
        size_t &seen = reads_[buf];
        if (got > seen) seen = got;
        return got;
    }
    // Bytes read into the buffer at p; 0 when nothing was (e.g. a compressed
    // record, which is inflated from a scratch buffer).
    size_t read_into(const void *p) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = reads_.find(p);
        return it == reads_.end() ? 0 : it->second;
    }

    // Each way of reading the archive (state dict, then TorchScript) gets
    // the budget anew: a TorchScript file may be read once by each.
    void new_attempt() {
        std::lock_guard<std::mutex> lock(mu_);
        total_ = 0;
    }
    bool over_budget() const {
        std::lock_guard<std::mutex> lock(mu_);
        return over_budget_;
    }
    size_t budget() const {
        return 2 * size_ + (1u << 20);
    }

  private:
    FILE *f_;
    size_t size_;
    mutable std::mutex mu_;
    mutable size_t total_ = 0;
    mutable bool over_budget_ = false;
    mutable std::unordered_map<const void *, size_t> reads_;
};

struct cs_archive {
    std::vector<std::string> names;
    std::vector<torch::Tensor> tensors; // contiguous, CPU; own the data the views point at
    std::vector<cs_tensor> views;
    // Checking and materialising tensors (see archive_add).
    const RecordingReader *reader = nullptr;
    std::unordered_map<const void *, size_t> storages; // distinct storages seen: real bytes
    size_t file_bytes = 0;                             // bytes of all distinct storages
    size_t copied_bytes = 0; // bytes materialised by copies of non-contiguous views
    std::string error;       // the first tensor refused, with why
};

namespace {

std::string strides_str(at::IntArrayRef s) {
    return shape_str(s);
}

// Checks a tensor's view against the bytes its storage really holds, before
// anything reads or copies it: sizes and strides must be non-negative, the
// view must lie inside the storage, and materialising it (.contiguous())
// must not need more memory than the file holds. A stride-0 (expanded)
// view of a one-element storage would otherwise turn a 1 KB file into
// gigabytes. Returns "" or why the tensor is refused.
std::string check_view(cs_archive *a, const torch::Tensor &t) {
    if (t.layout() != at::kStrided || !t.has_storage()) return "is not a dense tensor";
    const c10::Storage &st = t.storage();
    const void *base = st.data();
    size_t real = st.nbytes();
    if (real > 0) {
        size_t got = a->reader ? a->reader->read_into(base) : 0;
        if (got == 0)
            return "has data that is not an uncompressed record of the archive (clipscore reads "
                   "the uncompressed archives torch.save writes)";
        if (got < real) real = got;
    }
    const int64_t item = (int64_t)t.element_size();
    int64_t numel = 1, last = t.storage_offset(); // last: the furthest element the view reads
    bool overflow = last < 0;
    for (int64_t d = 0; d < t.dim() && !overflow; d++) {
        int64_t n = t.size(d), s = t.stride(d), reach;
        if (n < 0 || s < 0) return "has a negative size or stride";
        overflow |= __builtin_mul_overflow(numel, n, &numel);
        if (n > 0) {
            overflow |= __builtin_mul_overflow(n - 1, s, &reach);
            overflow |= __builtin_add_overflow(last, reach, &last);
        }
    }
    int64_t need = 0, bytes = 0;
    if (!overflow) {
        overflow |= __builtin_add_overflow(last, 1, &need);
        overflow |= __builtin_mul_overflow(need, item, &need);
        overflow |= __builtin_mul_overflow(numel, item, &bytes);
    }
    std::string view = "view (shape " + shape_str(t.sizes()) + ", strides " +
                       strides_str(t.strides()) + ", offset " + std::to_string(t.storage_offset()) +
                       ")";
    if (overflow) return "has a " + view + " whose size overflows";
    if (numel == 0) return "";
    if ((uint64_t)need > real)
        return "has a " + view + " that reaches byte " + std::to_string(need) +
               " of a storage holding " + std::to_string(real) + " bytes";
    if (a->storages.emplace(base, real).second) a->file_bytes += real;
    if (!t.is_contiguous()) {
        // A copy: its size is bounded by the storage (no expanded views) and
        // all copies together by what the file holds.
        if ((uint64_t)bytes > real)
            return "has a " + view + " of " + std::to_string(bytes) + " bytes over a storage of " +
                   std::to_string(real) +
                   " bytes (an expanded or overlapping view; no CLIP weight is one)";
        if (a->copied_bytes + (size_t)bytes > a->file_bytes)
            return "has a " + view + " whose copy would exceed the archive's own size";
        a->copied_bytes += (size_t)bytes;
    }
    return "";
}

// Adds one named tensor, checked first (check_view); the first refusal is
// kept in a->error and stops the loading.
void archive_add(cs_archive *a, const std::string &name, const torch::Tensor &t) {
    if (!a->error.empty()) return;
    cs_dtype dt;
    if (!to_cs_dtype(t.scalar_type(), &dt)) return; // e.g. complex: no CLIP weight is
    if (t.dim() > CS_MAX_DIMS) return;
    std::string why = check_view(a, t);
    if (!why.empty()) {
        a->error = "tensor " + name + " " + why;
        return;
    }
    a->names.push_back(name);
    a->tensors.push_back(t.detach().contiguous());
}

} // namespace

extern "C" int cs_archive_open(const char *path, cs_archive **out, cs_error *e) {
    *out = nullptr;
    std::unique_ptr<cs_archive> a(new (std::nothrow) cs_archive());
    if (!a) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", path);
    std::string pickle_err, jit_err;
    SHIM_TRY
    std::unique_ptr<FILE, int (*)(FILE *)> f(fopen(path, "rb"), fclose);
    if (!f) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    char magic[2] = {0, 0};
    struct stat sb;
    if (fstat(fileno(f.get()), &sb) != 0 || fread(magic, 1, 2, f.get()) != 2 || magic[0] != 'P' ||
        magic[1] != 'K')
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: not a zip-format torch file (re-save it with a current PyTorch, or "
                       "convert it to safetensors)",
                       path);
    auto rai = std::make_shared<RecordingReader>(f.get(), (size_t)sb.st_size);
    a->reader = rai.get();
    // A torch.save'd state dict first (what torch::pickle_load does, with
    // our reader); a TorchScript archive's pickle names its own classes,
    // which the plain unpickler refuses, so that comes next.
    try {
        caffe2::serialize::PyTorchStreamReader zr(rai);
        // Storages saved from a GPU land on the CPU, where check_view sees them.
        torch::IValue v = torch::jit::readArchiveAndTensors(
            "data", "", "", c10::nullopt, c10::nullopt, c10::Device(c10::kCPU), zr);
        if (v.isGenericDict()) {
            for (const auto &kv : v.toGenericDict()) {
                if (kv.key().isString() && kv.value().isTensor())
                    archive_add(a.get(), kv.key().toStringRef(), kv.value().toTensor());
            }
        } else {
            pickle_err = "the pickle holds " + std::string(v.tagKind()) + ", not a state dict";
        }
    } catch (const c10::Error &err) {
        pickle_err = short_what(err);
    }
    if (a->tensors.empty() && a->error.empty()) {
        rai->new_attempt();
        try {
            torch::jit::Module m = torch::jit::load(rai, torch::kCPU);
            for (const auto &p : m.named_parameters(true)) archive_add(a.get(), p.name, p.value);
            for (const auto &b : m.named_buffers(true)) archive_add(a.get(), b.name, b.value);
        } catch (const c10::Error &err) {
            jit_err = short_what(err);
        }
    }
    a->reader = nullptr; // the reader goes with this scope
    if (rai->over_budget())
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: reads more than twice the file's size (a weight record named by many "
                       "tensors?); refused",
                       path);
    if (!a->error.empty()) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s", path, a->error.c_str());
    if (a->tensors.empty())
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: no tensors found (as a state dict: %s; as TorchScript: %s)", path,
                       pickle_err.empty() ? "empty" : pickle_err.c_str(),
                       jit_err.empty() ? "empty" : jit_err.c_str());
    a->views.resize(a->tensors.size());
    for (size_t i = 0; i < a->tensors.size(); i++) {
        const torch::Tensor &t = a->tensors[i];
        cs_tensor &v = a->views[i];
        memset(&v, 0, sizeof v);
        v.name = a->names[i].c_str();
        to_cs_dtype(t.scalar_type(), &v.dtype);
        v.ndim = (int)t.dim();
        for (int d = 0; d < v.ndim; d++) v.shape[d] = t.size(d);
        v.data = t.data_ptr();
        v.nbytes = (size_t)t.numel() * t.element_size();
    }
    *out = a.release();
    return 0;
    SHIM_CATCH(e, path)
}

extern "C" int cs_archive_count(const cs_archive *a) {
    return a ? (int)a->views.size() : 0;
}

extern "C" const cs_tensor *cs_archive_tensor(const cs_archive *a, int i) {
    if (!a || i < 0 || (size_t)i >= a->views.size()) return nullptr;
    return &a->views[(size_t)i];
}

extern "C" void cs_archive_release(cs_archive *a, const void *data) {
    if (!a || !data) return;
    for (size_t i = 0; i < a->tensors.size(); i++) {
        if (a->views[i].data == data) {
            a->tensors[i] = torch::Tensor();
            a->views[i].data = nullptr;
            a->views[i].nbytes = 0;
            return;
        }
    }
}

extern "C" void cs_archive_free(cs_archive *a) {
    delete a;
}

// --------------------------------------------------------------- the model

namespace {

struct Block {
    torch::Tensor ln_1_w, ln_1_b; // [W]
    torch::Tensor in_w, in_b;     // [3W, W], [3W]: q, k, v stacked
    torch::Tensor out_w, out_b;   // [W, W], [W]
    torch::Tensor ln_2_w, ln_2_b; // [W]
    torch::Tensor fc_w, fc_b;     // [M, W], [M]
    torch::Tensor proj_w, proj_b; // [W, M], [W]
};

} // namespace

struct cs_torch_model {
    cs_clip_config cfg;
    torch::Device device = torch::kCPU;
    at::ScalarType dtype = at::kFloat;
    std::string device_name, precision_name;
    // name -> (expected shape, tensor once given)
    std::map<std::string, std::pair<std::vector<int64_t>, torch::Tensor>> weights;
    bool ready = false;
    // Resolved after ready(): the forward passes read these.
    torch::Tensor v_conv, v_cls, v_pos, v_ln_pre_w, v_ln_pre_b, v_ln_post_w, v_ln_post_b, v_proj;
    torch::Tensor t_tok, t_pos, t_ln_w, t_ln_b, t_proj;
    std::vector<Block> v_blocks, t_blocks;
    std::shared_ptr<const cs_resnet::Tower> resnet; // the image tower of a ResNet CLIP
};

namespace {

bool is_norm_param(const std::string &name) {
    return name.find("ln_") != std::string::npos;
}

void expect(cs_torch_model *m, const std::string &name, std::vector<int64_t> shape) {
    m->weights[name] = {std::move(shape), torch::Tensor()};
}

void expect_blocks(cs_torch_model *m, const std::string &prefix, int layers, int w, int mlp) {
    for (int i = 0; i < layers; i++) {
        std::string p = prefix + std::to_string(i) + ".";
        expect(m, p + "ln_1.weight", {w});
        expect(m, p + "ln_1.bias", {w});
        expect(m, p + "attn.in_proj_weight", {3 * w, w});
        expect(m, p + "attn.in_proj_bias", {3 * w});
        expect(m, p + "attn.out_proj.weight", {w, w});
        expect(m, p + "attn.out_proj.bias", {w});
        expect(m, p + "ln_2.weight", {w});
        expect(m, p + "ln_2.bias", {w});
        expect(m, p + "mlp.c_fc.weight", {mlp, w});
        expect(m, p + "mlp.c_fc.bias", {mlp});
        expect(m, p + "mlp.c_proj.weight", {w, mlp});
        expect(m, p + "mlp.c_proj.bias", {w});
    }
}

std::vector<Block> take_blocks(cs_torch_model *m, const std::string &prefix, int layers) {
    std::vector<Block> bs((size_t)layers);
    for (int i = 0; i < layers; i++) {
        std::string p = prefix + std::to_string(i) + ".";
        auto g = [&](const char *n) { return m->weights.at(p + n).second; };
        Block &b = bs[(size_t)i];
        b.ln_1_w = g("ln_1.weight");
        b.ln_1_b = g("ln_1.bias");
        b.in_w = g("attn.in_proj_weight");
        b.in_b = g("attn.in_proj_bias");
        b.out_w = g("attn.out_proj.weight");
        b.out_b = g("attn.out_proj.bias");
        b.ln_2_w = g("ln_2.weight");
        b.ln_2_b = g("ln_2.bias");
        b.fc_w = g("mlp.c_fc.weight");
        b.fc_b = g("mlp.c_fc.bias");
        b.proj_w = g("mlp.c_proj.weight");
        b.proj_b = g("mlp.c_proj.bias");
    }
    return bs;
}

// Layer norm in fp32 whatever the compute type, as the reference does for
// fp16 (its LayerNorm subclass casts up and back); the norm's parameters
// are kept in fp32 for that reason.
torch::Tensor layer_norm(const torch::Tensor &x, const torch::Tensor &w, const torch::Tensor &b,
                         float eps) {
    if (x.scalar_type() == at::kFloat) return torch::layer_norm(x, {x.size(-1)}, w, b, eps);
    return torch::layer_norm(x.to(at::kFloat), {x.size(-1)}, w, b, eps).to(x.scalar_type());
}

// SDPA with an explicit scale (1.0: q is pre-scaled) exists from 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define CS_HAVE_SDPA 1
#endif

// x [N, L, W] -> [N, L, W]; causal: each position sees itself and earlier
// ones. The q rows of in_proj are pre-scaled by 1/sqrt(hd) (see fold_scales),
// so the scores are plain q k^T.
torch::Tensor attention(const torch::Tensor &x, const Block &b, int heads, bool causal) {
    const int64_t n = x.size(0), l = x.size(1), w = x.size(2), hd = w / heads;
    // [N, L, 3W] -> [3, N, H, L, hd] in one copy, so q, k, v are contiguous.
    torch::Tensor qkv = torch::linear(x, b.in_w, b.in_b)
                            .view({n, l, 3, heads, hd})
                            .permute({2, 0, 3, 1, 4})
                            .contiguous();
    torch::Tensor o;
#ifdef CS_HAVE_SDPA
    o = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], {}, 0.0, causal, 1.0);
#else
    torch::Tensor q = qkv[0].view({n * heads, l, hd}), k = qkv[1].view({n * heads, l, hd}),
                  v = qkv[2].view({n * heads, l, hd});
    torch::Tensor s;
    if (causal) // mask [l, l] broadcast over the batch, added by the same call
        s = torch::baddbmm(torch::full({l, l}, -INFINITY, x.options()).triu(1), q,
                           k.transpose(1, 2));
    else
        s = torch::bmm(q, k.transpose(1, 2));
    o = torch::bmm(torch::softmax(s, -1), v); // [N*H, L, hd]
#endif
    o = o.view({n, heads, l, hd}).transpose(1, 2).reshape({n, l, w});
    return torch::linear(o, b.out_w, b.out_b);
}

// quick_gelu(h) = h * sigmoid(1.702 h) = silu(1.702 h) / 1.702: with the
// 1.702 folded into c_fc and its inverse into c_proj (fold_scales), the
// activation is one in-place silu pass.
torch::Tensor mlp(const torch::Tensor &x, const Block &b, bool quick_gelu) {
    torch::Tensor h = torch::linear(x, b.fc_w, b.fc_b);
    h = quick_gelu ? torch::silu_(h) : torch::gelu(h);
    return torch::linear(h, b.proj_w, b.proj_b);
}

// The optional hook of the forward passes (cs_torch_trace_*): NULL on the
// normal path, where each stage then costs one pointer test.
struct Tracer {
    cs_torch_trace_cb cb;
    void *user;
    // Hands stage `name` to the callback as contiguous fp32 on the CPU,
    // synchronously: the in-place updates that follow cannot affect it.
    void emit(const char *name, const torch::Tensor &x) const {
        torch::Tensor c = x.to(torch::kCPU, at::kFloat).contiguous();
        std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
        cb(name, c.data_ptr<float>(), shape.data(), (int)shape.size(), user);
    }
};

torch::Tensor transformer(torch::Tensor x, const std::vector<Block> &blocks, int heads, bool causal,
                          const cs_clip_config &cfg, const Tracer *tr) {
    for (size_t i = 0; i < blocks.size(); i++) {
        const Block &b = blocks[i];
        x.add_(attention(layer_norm(x, b.ln_1_w, b.ln_1_b, cfg.ln_eps), b, heads, causal));
        x.add_(mlp(layer_norm(x, b.ln_2_w, b.ln_2_b, cfg.ln_eps), b, cfg.quick_gelu != 0));
        if (tr) tr->emit(("block." + std::to_string(i)).c_str(), x);
    }
    return x;
}

// Folds constant scales into the weights as they arrive (in fp32, before any
// cast to fp16/bf16): 1/sqrt(head width) into the q rows of in_proj, and
// quick_gelu's 1.702 into c_fc (its inverse into c_proj).
void fold_scales(const cs_torch_model *m, const std::string &name, torch::Tensor &w) {
    auto ends = [&](const char *suffix) {
        size_t n = strlen(suffix);
        return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
    };
    const bool vision = name.rfind("visual.", 0) == 0;
    const int64_t width = vision ? m->cfg.vision_width : m->cfg.text_width;
    const int heads = vision ? m->cfg.vision_heads : m->cfg.text_heads;
    if (ends("attn.in_proj_weight") || ends("attn.in_proj_bias"))
        w.narrow(0, 0, width).mul_(1.0 / std::sqrt((double)(width / heads)));
    else if (m->cfg.quick_gelu && (ends("mlp.c_fc.weight") || ends("mlp.c_fc.bias")))
        w.mul_(1.702);
    else if (m->cfg.quick_gelu && ends("mlp.c_proj.weight"))
        w.div_(1.702);
}

void copy_out(const torch::Tensor &y, float *out) {
    torch::Tensor c = y.to(torch::kCPU, at::kFloat).contiguous();
    memcpy(out, c.data_ptr<float>(), (size_t)c.numel() * sizeof(float));
}

int parse_device(const char *device, torch::Device *out, std::string *name, cs_error *e) {
    std::string d = device && *device ? device : "auto";
    int n_cuda = (int)torch::cuda::device_count();
    if (d == "auto") d = n_cuda > 0 ? "cuda:0" : "cpu";
    if (d == "cpu") {
        *out = torch::kCPU;
        *name = "cpu";
        return 0;
    }
    if (d == "cuda" || d.rfind("cuda:", 0) == 0) {
        int idx = 0;
        if (d.size() > 5) {
            char *end = nullptr;
            long v = strtol(d.c_str() + 5, &end, 10);
            if (*end || v < 0 || v > 1024)
                return cs_fail(e, CLIPSCORE_EARG, "--device %s: expected cuda:N", d.c_str());
            idx = (int)v;
        }
        if (!torch::cuda::is_available())
            return cs_fail(e, CLIPSCORE_EDEVICE,
                           "--device %s: this clipscore was built against a libtorch without "
                           "CUDA (or no GPU is visible); use --device cpu, or rebuild with "
                           "CMAKE_PREFIX_PATH pointing at a CUDA libtorch",
                           d.c_str());
        if (idx >= n_cuda)
            return cs_fail(e, CLIPSCORE_EDEVICE, "--device %s: only %d CUDA device(s) visible",
                           d.c_str(), n_cuda);
        *out = torch::Device(torch::kCUDA, (c10::DeviceIndex)idx);
        *name = "cuda:" + std::to_string(idx);
        return 0;
    }
    return cs_fail(e, CLIPSCORE_EARG, "--device %s: expected auto, cpu, cuda or cuda:N", d.c_str());
}

int parse_precision(const char *precision, bool cuda, at::ScalarType *out, std::string *name,
                    cs_error *e) {
    std::string p = precision && *precision ? precision : "auto";
    if (p == "auto") p = cuda ? "fp16" : "fp32"; // as the reference: fp16 on GPU
    if (p == "fp32" || p == "float32") {
        *out = at::kFloat;
        *name = "fp32";
    } else if (p == "fp16" || p == "float16" || p == "half") {
        if (!cuda)
            return cs_fail(e, CLIPSCORE_EARG,
                           "--precision fp16 needs a CUDA device (libtorch's CPU kernels lack "
                           "fp16 support); use fp32 or bf16 on the CPU");
        *out = at::kHalf;
        *name = "fp16";
    } else if (p == "bf16" || p == "bfloat16") {
        *out = at::kBFloat16;
        *name = "bf16";
    } else {
        return cs_fail(e, CLIPSCORE_EARG, "--precision %s: expected auto, fp32, fp16 or bf16",
                       p.c_str());
    }
    return 0;
}

} // namespace

extern "C" int cs_torch_model_create(const cs_clip_config *cfg, const char *device,
                                     const char *precision, cs_torch_model **out, cs_error *e) {
    *out = nullptr;
    SHIM_TRY
    const cs_clip_config &c = *cfg;
    // The bounds keep every shape product below in int64_t.
    int rc = cs_clip_config_validate(&c, "model configuration", e);
    if (rc) return rc;
    std::unique_ptr<cs_torch_model> m(new cs_torch_model());
    m->cfg = c;
    rc = parse_device(device, &m->device, &m->device_name, e);
    if (rc) return rc;
    rc = parse_precision(precision, m->device.is_cuda(), &m->dtype, &m->precision_name, e);
    if (rc) return rc;

    if (cs_clip_config_is_resnet(&c)) {
        cs_resnet::expect_weights(c, [&](const std::string &name, std::vector<int64_t> shape) {
            expect(m.get(), name, std::move(shape));
        });
    } else {
        const int64_t g = c.image_size / c.patch_size;
        expect(m.get(), "visual.conv1.weight", {c.vision_width, 3, c.patch_size, c.patch_size});
        expect(m.get(), "visual.class_embedding", {c.vision_width});
        expect(m.get(), "visual.positional_embedding", {g * g + 1, c.vision_width});
        expect(m.get(), "visual.ln_pre.weight", {c.vision_width});
        expect(m.get(), "visual.ln_pre.bias", {c.vision_width});
        expect_blocks(m.get(), "visual.transformer.resblocks.", c.vision_layers, c.vision_width,
                      c.vision_mlp);
        expect(m.get(), "visual.ln_post.weight", {c.vision_width});
        expect(m.get(), "visual.ln_post.bias", {c.vision_width});
        expect(m.get(), "visual.proj", {c.vision_width, c.embed_dim});
    }
    expect(m.get(), "token_embedding.weight", {c.vocab_size, c.text_width});
    expect(m.get(), "positional_embedding", {c.context_length, c.text_width});
    expect_blocks(m.get(), "transformer.resblocks.", c.text_layers, c.text_width, c.text_mlp);
    expect(m.get(), "ln_final.weight", {c.text_width});
    expect(m.get(), "ln_final.bias", {c.text_width});
    expect(m.get(), "text_projection", {c.text_width, c.embed_dim});
    *out = m.release();
    return 0;
    SHIM_CATCH(e, "creating the model")
}

extern "C" int cs_torch_model_set(cs_torch_model *m, const cs_tensor *t, cs_error *e) {
    SHIM_TRY
    auto it = m->weights.find(t->name);
    if (it == m->weights.end()) return 1;
    at::ScalarType st;
    if (!to_torch_dtype(t->dtype, &st))
        return cs_fail(e, CLIPSCORE_EMODEL, "weight %s: dtype %s is not a float type", t->name,
                       cs_dtype_name(t->dtype));
    std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
    if (shape != it->second.first)
        return fail(e, CLIPSCORE_EMODEL,
                    std::string("weight ") + t->name + ": shape " + shape_str(shape) +
                        ", the model's configuration needs " + shape_str(it->second.first));
    // from_blob views the caller's buffer; clone() gives the model its own copy.
    // Copied into a fresh tensor first: safetensors data need not be aligned.
    torch::Tensor src = torch::empty(shape, torch::TensorOptions().dtype(st));
    if ((size_t)src.numel() * src.element_size() != t->nbytes)
        return cs_fail(e, CLIPSCORE_EMODEL, "weight %s: %zu bytes for its shape", t->name,
                       t->nbytes);
    memcpy(src.data_ptr(), t->data, t->nbytes);
    // A ResNet tower stays in fp32 until its batch norms are folded (ready).
    const bool fp32 = is_norm_param(it->first) ||
                      (cs_clip_config_is_resnet(&m->cfg) && cs_resnet::is_tower_weight(it->first));
    at::ScalarType want = fp32 ? at::kFloat : m->dtype;
    // Convert through fp32 on the CPU (fp16 arithmetic is CUDA-only here).
    torch::Tensor w = src.to(at::kFloat).clone();
    fold_scales(m, it->first, w);
    it->second.second = w.to(want);
    return 0;
    SHIM_CATCH(e, std::string("weight ") + t->name)
}

extern "C" int cs_torch_model_ready(cs_torch_model *m, cs_error *e) {
    SHIM_TRY
    std::string missing;
    int n_missing = 0;
    for (auto &kv : m->weights) {
        if (!kv.second.second.defined()) {
            if (n_missing++ < 3) missing += (missing.empty() ? "" : ", ") + kv.first;
        }
    }
    if (n_missing)
        return cs_fail(e, CLIPSCORE_EMODEL, "model is missing %d weight(s): %s%s", n_missing,
                       missing.c_str(), n_missing > 3 ? ", ..." : "");
    for (auto &kv : m->weights) kv.second.second = kv.second.second.to(m->device);
    auto w = [&](const char *n) { return m->weights.at(n).second; };
    if (cs_clip_config_is_resnet(&m->cfg)) {
        m->resnet = cs_resnet::build(
            m->cfg, [&](const std::string &n) { return m->weights.at(n).second; }, m->dtype,
            /*channels_last=*/true);
    } else {
        m->v_conv = w("visual.conv1.weight");
        m->v_cls = w("visual.class_embedding");
        m->v_pos = w("visual.positional_embedding");
        m->v_ln_pre_w = w("visual.ln_pre.weight");
        m->v_ln_pre_b = w("visual.ln_pre.bias");
        m->v_ln_post_w = w("visual.ln_post.weight");
        m->v_ln_post_b = w("visual.ln_post.bias");
        m->v_proj = w("visual.proj");
        m->v_blocks = take_blocks(m, "visual.transformer.resblocks.", m->cfg.vision_layers);
    }
    m->t_tok = w("token_embedding.weight");
    m->t_pos = w("positional_embedding");
    m->t_ln_w = w("ln_final.weight");
    m->t_ln_b = w("ln_final.bias");
    m->t_proj = w("text_projection");
    m->t_blocks = take_blocks(m, "transformer.resblocks.", m->cfg.text_layers);
    m->weights.clear(); // the resolved handles above keep the tensors alive
    m->ready = true;
    return 0;
    SHIM_CATCH(e, "moving the model to " + m->device_name)
}

extern "C" void cs_torch_model_free(cs_torch_model *m) {
    delete m;
}

extern "C" const char *cs_torch_model_device(const cs_torch_model *m) {
    return m->device_name.c_str();
}

extern "C" const char *cs_torch_model_precision(const cs_torch_model *m) {
    return m->precision_name.c_str();
}

// The image tower; tr (may be NULL) sees each stage. The one forward pass
// behind both cs_torch_encode_images and cs_torch_trace_images.
static int encode_images(cs_torch_model *m, const float *pixels, int n, float *out,
                         const Tracer *tr, cs_error *e) {
    if (!m->ready) return cs_fail(e, CLIPSCORE_EINTERNAL, "model used before it was ready");
    if (n <= 0) return 0;
    SHIM_TRY
    c10::InferenceMode guard;
    const cs_clip_config &c = m->cfg;
    const int64_t r = c.image_size, w = c.vision_width;
    // From a pinned buffer (cs_torch_host_alloc) the copy to the GPU is
    // asynchronous; the cast to fp16/bf16 then runs on the device.
    torch::Tensor x = torch::from_blob(const_cast<float *>(pixels), {n, 3, r, r}, at::kFloat)
                          .to(m->device, at::kFloat, /*non_blocking=*/m->device.is_cuda())
                          .to(m->dtype);
    if (m->resnet) {
        cs_resnet::TraceFn trace;
        if (tr) trace = [tr](const char *stage, const torch::Tensor &t) { tr->emit(stage, t); };
        copy_out(cs_resnet::forward(*m->resnet, x, trace), out);
        return 0;
    }
    x = torch::conv2d(x, m->v_conv, {}, c.patch_size); // [N, W, g, g]
    x = x.flatten(2).transpose(1, 2);                  // [N, g*g, W]
    torch::Tensor cls = m->v_cls.view({1, 1, w}).expand({n, 1, w});
    x = torch::cat({cls, x}, 1) + m->v_pos; // [N, g*g+1, W]
    if (tr) tr->emit("embed", x);
    x = layer_norm(x, m->v_ln_pre_w, m->v_ln_pre_b, c.ln_eps);
    if (tr) tr->emit("ln_pre", x);
    x = transformer(x, m->v_blocks, c.vision_heads, false, c, tr);
    x = layer_norm(x.select(1, 0), m->v_ln_post_w, m->v_ln_post_b, c.ln_eps); // class token
    if (tr) tr->emit("ln_post", x);
    torch::Tensor y = torch::matmul(x, m->v_proj); // [N, D]
    if (tr) tr->emit("proj", y);
    copy_out(y, out);
    return 0;
    SHIM_CATCH(e, "image encoder")
}

extern "C" int cs_torch_encode_images(cs_torch_model *m, const float *pixels, int n, float *out,
                                      cs_error *e) {
    return encode_images(m, pixels, n, out, nullptr, e);
}

extern "C" int cs_torch_trace_images(cs_torch_model *m, const float *pixels, int n, float *out,
                                     cs_torch_trace_cb cb, void *user, cs_error *e) {
    if (!cb) return cs_fail(e, CLIPSCORE_EARG, "cs_torch_trace_images: no callback");
    Tracer tr{cb, user};
    return encode_images(m, pixels, n, out, &tr, e);
}

// The text tower; as encode_images.
static int encode_texts(cs_torch_model *m, const int32_t *ids, const int *lens, int n, int stride,
                        float *out, const Tracer *tr, cs_error *e) {
    if (!m->ready) return cs_fail(e, CLIPSCORE_EINTERNAL, "model used before it was ready");
    if (n <= 0) return 0;
    const cs_clip_config &c = m->cfg;
    int l = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > stride || lens[i] > c.context_length)
            return cs_fail(e, CLIPSCORE_EINTERNAL, "text %d: %d tokens (context %d)", i, lens[i],
                           c.context_length);
        if (lens[i] > l) l = lens[i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < lens[i]; j++)
            if (ids[(size_t)i * stride + j] < 0 || ids[(size_t)i * stride + j] >= c.vocab_size)
                return cs_fail(e, CLIPSCORE_EMODEL, "token id %d is outside the vocabulary (%d)",
                               ids[(size_t)i * stride + j], c.vocab_size);
    SHIM_TRY
    c10::InferenceMode guard;
    // Only the first l positions: padding after a row's end token cannot
    // reach that token through the causal mask.
    std::vector<int64_t> tok_v((size_t)n * l, 0), last_v((size_t)n);
    for (int i = 0; i < n; i++) {
        // Features are read where the reference reads them: at the row's
        // largest id (argmax, first occurrence), which is the first end token
        // since it has the highest id; a caption spelling "<|endoftext|>"
        // puts one before the last position.
        const int32_t *row = ids + (size_t)i * stride;
        int at = 0;
        for (int j = 0; j < lens[i]; j++) {
            tok_v[(size_t)i * l + j] = row[j];
            if (row[j] > row[at]) at = j;
        }
        last_v[(size_t)i] = at;
    }
    torch::Tensor tok = torch::from_blob(tok_v.data(), {n, l}, at::kLong);
    torch::Tensor last = torch::from_blob(last_v.data(), {n}, at::kLong);
    tok = tok.to(m->device);
    torch::Tensor x = torch::embedding(m->t_tok, tok) + m->t_pos.slice(0, 0, l); // [N, l, W]
    if (tr) tr->emit("embed", x);
    x = transformer(x, m->t_blocks, c.text_heads, true, c, tr);
    x = layer_norm(x, m->t_ln_w, m->t_ln_b, c.ln_eps);
    if (tr) tr->emit("ln_final", x);
    torch::Tensor rows =
        torch::arange(n, torch::TensorOptions().dtype(at::kLong).device(m->device));
    x = x.index({rows, last.to(m->device)}); // [N, W]
    if (tr) tr->emit("pooled", x);
    torch::Tensor y = torch::matmul(x, m->t_proj); // [N, D]
    if (tr) tr->emit("proj", y);
    copy_out(y, out);
    return 0;
    SHIM_CATCH(e, "text encoder")
}

extern "C" int cs_torch_encode_texts(cs_torch_model *m, const int32_t *ids, const int *lens, int n,
                                     int stride, float *out, cs_error *e) {
    return encode_texts(m, ids, lens, n, stride, out, nullptr, e);
}

extern "C" int cs_torch_trace_texts(cs_torch_model *m, const int32_t *ids, const int *lens, int n,
                                    int stride, float *out, cs_torch_trace_cb cb, void *user,
                                    cs_error *e) {
    if (!cb) return cs_fail(e, CLIPSCORE_EARG, "cs_torch_trace_texts: no callback");
    Tracer tr{cb, user};
    return encode_texts(m, ids, lens, n, stride, out, &tr, e);
}

// Pinned buffers are owned by tensors kept here until freed.
static std::mutex host_mu;
static std::unordered_map<void *, torch::Tensor> host_bufs;

extern "C" void *cs_torch_host_alloc(const cs_torch_model *m, size_t bytes) {
    if (m && m->device.is_cuda()) {
        try {
            torch::Tensor t =
                torch::empty({(int64_t)(bytes ? bytes : 1)},
                             torch::TensorOptions().dtype(at::kByte).pinned_memory(true));
            std::lock_guard<std::mutex> lock(host_mu);
            host_bufs[t.data_ptr()] = t;
            return t.data_ptr();
        } catch (...) {
            // no pinned memory to be had: fall back to pageable memory
        }
    }
    return malloc(bytes ? bytes : 1);
}

extern "C" void cs_torch_host_free(void *p) {
    if (!p) return;
    {
        std::lock_guard<std::mutex> lock(host_mu);
        auto it = host_bufs.find(p);
        if (it != host_bufs.end()) {
            host_bufs.erase(it);
            return;
        }
    }
    free(p);
}

extern "C" int cs_torch_blas_has_own_threads(void) {
    return at::hasMKL() ? 0 : 1;
}

extern "C" void cs_torch_set_threads(int n) {
    if (n > 0) at::set_num_threads(n);
}

extern "C" int cs_torch_get_threads(void) {
    return at::get_num_threads();
}

extern "C" int cs_torch_cuda_device_count(void) {
    try {
        return (int)torch::cuda::device_count();
    } catch (...) {
        return 0;
    }
}

extern "C" const char *cs_torch_version(void) {
    return TORCH_VERSION;
}
