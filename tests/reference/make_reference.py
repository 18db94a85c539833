#!/usr/bin/python3
"""Reference tensors from PyTorch for tests/reference_test.cpp.

Builds a small GPT and a small ResNet exactly as minipipe defines them (same parameter
names, same layouts: Linear weights [out, in], GELU in its tanh form, pre-LayerNorm
blocks, batch norm with batch statistics), draws weights and inputs from a fixed seed,
and writes the weights, the inputs, the loss and the gradient of every parameter to a
safetensors file (written by hand below, so only torch and numpy are needed).

    /usr/bin/python3 tests/reference/make_reference.py OUTPUT_DIR
"""
import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)


def save_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in sorted(tensors.items()):
        array = t.detach().contiguous().numpy()
        dtype = {"float32": "F32", "int32": "I32"}[str(array.dtype)]
        data = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def parameter(shape, scale):
    return (torch.randn(*shape) * scale).requires_grad_()


# --- GPT ------------------------------------------------------------------------------
GPT = dict(vocabulary=37, context=12, dim=16, layers=2, heads=2, batch=3)


def gpt_parameters(c=GPT):
    p = {}
    d = c["dim"]
    p["embedding.tokens.weight"] = parameter((c["vocabulary"], d), 0.5)
    p["embedding.positions.weight"] = parameter((c["context"], d), 0.5)
    for b in range(c["layers"]):
        prefix = f"block{b}."
        for norm in ("ln1", "ln2"):
            p[prefix + norm + ".weight"] = (1 + parameter((d,), 0.1)).detach().requires_grad_()
            p[prefix + norm + ".bias"] = parameter((d,), 0.1)
        for name, (out_features, in_features) in {"attention.qkv": (3 * d, d), "attention.projection": (d, d),
                                                  "mlp.expand": (4 * d, d), "mlp.project": (d, 4 * d)}.items():
            p[prefix + name + ".weight"] = parameter((out_features, in_features), 1 / math.sqrt(in_features))
            p[prefix + name + ".bias"] = parameter((out_features,), 0.1)
    p["head.norm.weight"] = (1 + parameter((d,), 0.1)).detach().requires_grad_()
    p["head.norm.bias"] = parameter((d,), 0.1)
    p["head.logits.weight"] = parameter((c["vocabulary"], d), 1 / math.sqrt(d))
    return p


def gpt_loss(p, ids, targets, c=GPT):
    batch, tokens = ids.shape
    d, heads = c["dim"], c["heads"]
    x = p["embedding.tokens.weight"][ids.long()] + p["embedding.positions.weight"][:tokens]
    mask = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)
    for b in range(c["layers"]):
        q = f"block{b}."
        h = F.layer_norm(x, (d,), p[q + "ln1.weight"], p[q + "ln1.bias"], 1e-5)
        qkv = F.linear(h, p[q + "attention.qkv.weight"], p[q + "attention.qkv.bias"])
        qkv = qkv.reshape(batch, tokens, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        scores = qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(d // heads)
        attended = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ qkv[2]
        merged = attended.permute(0, 2, 1, 3).reshape(batch, tokens, d)
        x = x + F.linear(merged, p[q + "attention.projection.weight"], p[q + "attention.projection.bias"])
        h = F.layer_norm(x, (d,), p[q + "ln2.weight"], p[q + "ln2.bias"], 1e-5)
        h = F.gelu(F.linear(h, p[q + "mlp.expand.weight"], p[q + "mlp.expand.bias"]), approximate="tanh")
        x = x + F.linear(h, p[q + "mlp.project.weight"], p[q + "mlp.project.bias"])
    x = F.layer_norm(x, (d,), p["head.norm.weight"], p["head.norm.bias"], 1e-5)
    logits = F.linear(x, p["head.logits.weight"])
    return F.cross_entropy(logits.reshape(-1, c["vocabulary"]), targets.reshape(-1).long(), ignore_index=-100)


# --- ResNet ---------------------------------------------------------------------------
CNN = dict(width=4, stages=2, classes=10, batch=4)


def cnn_parameters(c=CNN):
    w, p = c["width"], {}

    def conv(name, out_channels, in_channels, kernel):
        p[name + ".weight"] = parameter((out_channels, in_channels, kernel, kernel), 1 / math.sqrt(in_channels * kernel * kernel))

    def bn(name, channels):
        p[name + ".weight"] = (1 + parameter((channels,), 0.1)).detach().requires_grad_()
        p[name + ".bias"] = parameter((channels,), 0.1)

    conv("stem.0", w, 1, 3)
    bn("stem.1", w)
    channels = w
    for stage in range(c["stages"]):
        out_channels, prefix = w << stage, f"stage{stage}_block0."
        conv(prefix + "conv1", out_channels, channels, 3)
        bn(prefix + "bn1", out_channels)
        conv(prefix + "conv2", out_channels, out_channels, 3)
        bn(prefix + "bn2", out_channels)
        if stage > 0:
            conv(prefix + "shortcut_conv", out_channels, channels, 1)
            bn(prefix + "shortcut_bn", out_channels)
        channels = out_channels
    p["classifier.weight"] = parameter((c["classes"], channels), 1 / math.sqrt(channels))
    p["classifier.bias"] = parameter((c["classes"],), 0.1)
    return p


def cnn_loss(p, images, targets, c=CNN):
    def bn(x, name):  # training mode: batch statistics
        return F.batch_norm(x, None, None, p[name + ".weight"], p[name + ".bias"], True, 0.1, 1e-5)

    x = F.relu(bn(F.conv2d(images, p["stem.0.weight"], padding=1), "stem.1"))
    for stage in range(c["stages"]):
        q, stride = f"stage{stage}_block0.", 1 if stage == 0 else 2
        h = F.relu(bn(F.conv2d(x, p[q + "conv1.weight"], stride=stride, padding=1), q + "bn1"))
        h = bn(F.conv2d(h, p[q + "conv2.weight"], padding=1), q + "bn2")
        shortcut = bn(F.conv2d(x, p[q + "shortcut_conv.weight"], stride=stride), q + "shortcut_bn") if stage > 0 else x
        x = F.relu(h + shortcut)
    logits = F.linear(x.mean(dim=(2, 3)), p["classifier.weight"], p["classifier.bias"])
    return F.cross_entropy(logits, targets.long())


def write(path, params, inputs, loss, metadata):
    loss.backward()
    tensors = {"loss": loss.detach().reshape(())}
    tensors.update({"input." + k: v for k, v in inputs.items()})
    for name, t in params.items():
        tensors["param." + name] = t
        tensors["grad." + name] = t.grad
    save_safetensors(path, tensors, {k: str(v) for k, v in metadata.items()} | {"torch": torch.__version__})
    print(f"wrote {path}: loss {loss.item():.6f}, {len(params)} parameters")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    out.mkdir(parents=True, exist_ok=True)

    p = gpt_parameters()
    ids = torch.randint(0, GPT["vocabulary"], (GPT["batch"], GPT["context"]), dtype=torch.int32)
    targets = torch.randint(0, GPT["vocabulary"], (GPT["batch"], GPT["context"]), dtype=torch.int32)
    targets[0, 3] = -100  # one ignored position
    write(out / "gpt_reference.safetensors", p, {"ids": ids, "targets": targets}, gpt_loss(p, ids, targets), GPT)

    p = cnn_parameters()
    images = torch.rand(CNN["batch"], 1, 8, 8)
    labels = torch.randint(0, CNN["classes"], (CNN["batch"],), dtype=torch.int32)
    write(out / "cnn_reference.safetensors", p, {"images": images, "labels": labels}, cnn_loss(p, images, labels), CNN)


if __name__ == "__main__":
    main()
