"""Writes the PyTorch checkpoint test files of SkelLab's checkpoint loader.

Run from this folder with the PyTorch reference of scripts/pytorch-bench installed:
    /tmp/torchref/bin/python make_torch_files.py ../../../scripts/pytorch-bench
The outputs are committed; tests never call Python.
"""
import argparse
import collections
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, sys.argv[1])
from model import MAMPTransformer, SkTWithDecoder  # noqa: E402

torch.manual_seed(7)
D, DEPTH, HEADS, FRAMES, JOINTS, U, CLASSES = 16, 1, 2, 8, 5, 4, 3

# 1. A MAMP linear-probe model: encoder + head Sequential(BatchNorm1d(affine=False), Linear),
#    saved as the official scripts do: {'model': state_dict (DataParallel 'module.' names),
#    'epoch', 'args': argparse.Namespace}. One weight is stored non-contiguous, one bias in
#    float64, and BatchNorm's num_batches_tracked is int64.
enc = MAMPTransformer(dim_feat=D, depth=DEPTH, num_heads=HEADS, num_frames=FRAMES,
                      num_joints=JOINTS, t_patch_size=U, pretrain=False)
with torch.no_grad():
    for p in enc.parameters():
        p.add_(0.1 * torch.randn_like(p))
head = nn.Sequential(nn.BatchNorm1d(D, affine=False, eps=1e-6), nn.Linear(D, CLASSES))
with torch.no_grad():
    head[0].running_mean.copy_(0.1 * torch.randn(D))
    head[0].running_var.copy_(0.5 + torch.rand(D))
    head[0].num_batches_tracked.fill_(12)
    head[1].weight.copy_(torch.randn(CLASSES, D))
    head[1].bias.copy_(torch.randn(CLASSES))
enc.eval(); head.eval()
x5 = torch.randn(2, 3, FRAMES, JOINTS, 2)  # [N, C, T, V, M]
with torch.no_grad():
    seq = x5.permute(0, 4, 2, 3, 1).reshape(4, FRAMES, JOINTS, 3)
    tokens = enc.forward_encoder(seq)["last_hidden_state"]  # [NM, L, D]
    feature = tokens.reshape(2, 2, -1, D).mean(dim=(1, 2))
    logits = head(feature)
state = collections.OrderedDict()
for k, v in enc.state_dict().items():
    state["module." + k] = v.clone()
for k, v in head.state_dict().items():
    state["module.head." + k] = v.clone()
w = state["module.blocks.0.attn.qkv.weight"]
state["module.blocks.0.attn.qkv.weight"] = w.t().contiguous().t()  # same values, strides (1, 48)
assert not state["module.blocks.0.attn.qkv.weight"].is_contiguous()
state["module.norm.bias"] = state["module.norm.bias"].double()
torch.save({"model": state, "epoch": 7, "args": argparse.Namespace(lr=0.1, batch_size=256),
            "scaler": {"scale": 65536.0, "growth_tracker": 0}}, "mamp_linear_tiny.pth")

# 2. A Skeleton2vec pretraining checkpoint: {'model': {'name', 'args', 'sd': ...}} with the
#    student under 'auto_encoder.' and a different EMA teacher under 'ema.model.'; the teacher's
#    final-norm weight is stored in float16 (its float32 value is the float16 rounding).
def s2v():
    m = SkTWithDecoder(temporal_segment_size=U, spatio_size=JOINTS, temporal_size=FRAMES,
                       encoder_emb_size=D, decoder_emb_size=D, encoder_depth=DEPTH,
                       decoder_depth=1, num_heads=HEADS)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()
student, teacher = s2v(), s2v()
with torch.no_grad():
    teacher.encoder_norm.weight.copy_(teacher.encoder_norm.weight.half().float())
x4 = torch.randn(2, FRAMES, JOINTS, 3)
with torch.no_grad():
    teacher_tokens = teacher.forward_encoder(x4)["last_hidden_state"]
    student_tokens = student.forward_encoder(x4)["last_hidden_state"]
sd = collections.OrderedDict()
for k, v in student.state_dict().items():
    sd["auto_encoder." + k] = v.clone()
for k, v in teacher.state_dict().items():
    sd["ema.model." + k] = v.clone()
sd["ema.model.encoder_norm.weight"] = sd["ema.model.encoder_norm.weight"].half()
torch.save({"model": {"name": "Skeleton2Vec2", "args": {"depth": DEPTH, "dim": D}, "sd": sd},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
            "epoch": 600}, "s2v_tiny.pt")

# 3. A pickle that would run a shell command when unpickled by Python.
class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/skellab-pwned",))

torch.save({"model": {"w": torch.zeros(2)}, "payload": Exploit()}, "malicious.pth")

save_file({"x5": x5.contiguous(), "logits": logits.contiguous(),
           "x4": x4.contiguous(), "teacher_tokens": teacher_tokens.contiguous(),
           "student_tokens": student_tokens.contiguous()}, "expected.safetensors")
print("written")
