"""Reference PyTorch models for skeleton self-supervised learning (MAMP, Skeleton2vec, PCM3).

This is an independent re-implementation written for benchmarking and for producing
numerical fixtures. Parameter NAMES and SHAPES of `state_dict()` follow the three public
PyTorch code bases so that their checkpoints load by name:

* MAMP flavour  (``MAMPTransformer``): keys such as ``joints_embed.proj.weight``,
  ``blocks.0.attn.qkv.weight`` (packed q|k|v), ``norm.weight``, ``decoder_blocks.0...``,
  ``decoder_pred.weight``.  LayerNorm eps = 1e-5, no layer scale.
* Skeleton2vec flavour (``SkTWithDecoder`` / ``Skeleton2Vec2``): keys such as
  ``encoder_embedding.projection.1.weight``, ``encoder.layers.0.attn.queries.weight``
  (separate q, k, v), ``encoder.layers.0.gamma_1`` (layer scale), ``encoder_norm.weight``,
  ``decoder_feat_head.weight``; the pretraining wrapper prefixes ``auto_encoder.`` (student)
  and ``ema.model.`` (EMA teacher).  LayerNorm eps = 1e-6.
* PCM3 (``PCM3``, at the end of this file): the official MoCo of JHang2020/PCM3 with its
  stepwise GRU encoder, keys ``encoder_q.encoder.gru.weight_ih_l0``, ``encoder_q.fc.0.weight``,
  ``cl_prompt``, ``linear.0.weight``, ``recons_decoder.decoder.weight_ih_l0``, ``queue`` ...;
  its own input layout is described there.

All tensors are float32.  Skeleton input layout for the transformer models is
``[NM, T, V, C]`` (sequences x frames x joints x coords; several persons are folded into
the batch axis by the caller).  Token order is time-major: token index = tp * V + v,
where tp = frame // t_patch.

See bench/README.md for the full naming table.
"""
from __future__ import annotations

import math
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# "math": explicit softmax(q k^T * scale) v, exactly as both official code bases write it.
# "sdpa": torch.nn.functional.scaled_dot_product_attention (same maths, fused kernel).
ATTN_IMPL = "math"


def set_attention_impl(name: str) -> None:
    global ATTN_IMPL
    if name not in ("math", "sdpa"):
        raise ValueError(name)
    ATTN_IMPL = name


# ----------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------

class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2.  Names: fc1, fc2 (both official code bases)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="none"))


class SelfAttention(nn.Module):
    """Multi-head self-attention.

    packed=True  -> one Linear ``qkv`` [3*D, D]; output rows 0..D-1 are q, D..2D-1 are k,
                    2D..3D-1 are v; inside each, head h owns rows h*hd .. (h+1)*hd-1.
    packed=False -> three Linears ``queries``, ``keys``, ``values`` [D, D] (Skeleton2vec).
    Scale = head_dim ** -0.5 applied to the logits q k^T (not to q).
    """

    def __init__(self, dim: int, num_heads: int, packed: bool = True, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim must be divisible by num_heads")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.packed = packed
        if packed:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        else:
            # registration order mirrors the Skeleton2vec module (keys, queries, values)
            self.keys = nn.Linear(dim, dim)
            self.queries = nn.Linear(dim, dim)
            self.values = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, N, hd]

    def qkv_heads(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        if self.packed:
            t = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim)
            t = t.permute(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
            return t[0], t[1], t[2]
        return (self._split_heads(self.queries(x)), self._split_heads(self.keys(x)),
                self._split_heads(self.values(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv_heads(x)
        if ATTN_IMPL == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            logits = torch.matmul(q, k.transpose(-2, -1)) * self.scale
            o = torch.matmul(logits.softmax(dim=-1), v)
        o = o.transpose(1, 2).reshape(b, n, d)
        return self.proj(o)


class Block(nn.Module):
    """Pre-norm transformer block:  x += g1 * attn(norm1(x));  x += g2 * mlp(norm2(x)).

    g1/g2 (``gamma_1``/``gamma_2``, shape [D]) exist only when layer_scale is given
    (Skeleton2vec uses 1e-4); otherwise they are 1.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, packed_qkv: bool = True,
                 eps: float = 1e-5, layer_scale: Optional[float] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, num_heads, packed=packed_qkv)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale is not None and layer_scale > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        if self.gamma_1 is not None:
            a = a * self.gamma_1
        x = x + a
        m = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            m = m * self.gamma_2
        return x + m


def embed_segments(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Joint-segment embedding, equal to the official Conv2d with kernel=stride=(t_patch, 1).

    x: [NM, T, V, C]  ->  [NM, TP, V, D]
    conv.weight: [D, C, t_patch, 1], so the flattened patch vector is ordered (c, u):
    element index = c * t_patch + u, where u is the frame inside the segment.
    """
    nm, t, v, c = x.shape
    d, c_w, u, p = conv.weight.shape
    if c != c_w or p != 1 or t % u:
        raise ValueError(f"bad input {tuple(x.shape)} for embedding weight {tuple(conv.weight.shape)}")
    tp = t // u
    seg = x.reshape(nm, tp, u, v, c).permute(0, 1, 3, 4, 2).reshape(nm, tp, v, c * u)
    return F.linear(seg, conv.weight.reshape(d, c * u), conv.bias)


def random_masking(tokens: torch.Tensor, mask_ratio: float, noise: Optional[torch.Tensor] = None):
    """MAE-style per-sequence random masking (both official code bases).

    tokens: [B, L, D]; noise: [B, L] uniform (drawn if None).  Tokens with the smallest
    noise are kept.  len_keep = int(L * (1 - mask_ratio)).
    Returns (kept [B, len_keep, D], mask [B, L] float 1=masked/0=kept,
             ids_restore [B, L] int64, ids_keep [B, len_keep] int64).
    """
    b, l, d = tokens.shape
    len_keep = int(l * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(b, l, device=tokens.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(b, len_keep, d))
    mask = torch.ones(b, l, device=tokens.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore, ids_keep


def fill_and_unshuffle(visible: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor):
    """Append mask tokens after the visible ones and undo the shuffle (MAE decoder input)."""
    b, n_vis, c = visible.shape
    l = ids_restore.shape[1]
    filler = mask_token.reshape(1, 1, c).expand(b, l - n_vis, c)
    full = torch.cat([visible, filler], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(b, l, c))


# ----------------------------------------------------------------------------------------
# MAMP flavour
# ----------------------------------------------------------------------------------------

class _JointsEmbed(nn.Module):
    def __init__(self, dim_in: int, dim: int, t_patch: int):
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim, kernel_size=(t_patch, 1), stride=(t_patch, 1))

    def forward(self, x):
        return embed_segments(x, self.proj)


class MAMPTransformer(nn.Module):
    """MAMP masked-motion-prediction model (names as the official pretraining model).

    With pretrain=False only the encoder part exists (names as the official downstream
    ``Transformer`` without its classification head).
    """

    def __init__(self, dim_in=3, dim_feat=256, decoder_dim_feat=256, depth=8, decoder_depth=3,
                 num_heads=8, mlp_ratio=4.0, num_frames=120, num_joints=25, t_patch_size=4,
                 pretrain=True, norm_skes_loss=True, eps=1e-5):
        super().__init__()
        self.dim_in, self.dim = dim_in, dim_feat
        self.t_patch = t_patch_size
        self.num_frames, self.num_joints = num_frames, num_joints
        self.tp = num_frames // t_patch_size
        self.norm_skes_loss = norm_skes_loss
        self.joints_embed = _JointsEmbed(dim_in, dim_feat, t_patch_size)
        self.blocks = nn.ModuleList([Block(dim_feat, num_heads, mlp_ratio, True, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim_feat, eps=eps)
        self.temp_embed = nn.Parameter(torch.zeros(1, self.tp, 1, dim_feat))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, num_joints, dim_feat))
        self.pretrain = pretrain
        if pretrain:
            dd = decoder_dim_feat
            self.decoder_embed = nn.Linear(dim_feat, dd)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder_blocks = nn.ModuleList([Block(dd, num_heads, mlp_ratio, True, eps)
                                                 for _ in range(decoder_depth)])
            self.decoder_norm = nn.LayerNorm(dd, eps=eps)
            self.decoder_temp_embed = nn.Parameter(torch.zeros(1, self.tp, 1, dd))
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, num_joints, dd))
            self.decoder_pred = nn.Linear(dd, t_patch_size * dim_in)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("embed") or name == "mask_token":
                nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[NM, T, V, C] -> [NM, TP*V, D] with positional embeddings added."""
        t = self.joints_embed(x)
        nm, tp, v, d = t.shape
        t = t + self.pos_embed[:, :, :v, :] + self.temp_embed[:, :tp, :, :]
        return t.reshape(nm, tp * v, d)

    def forward_encoder(self, x, mask_ratio=0.0, noise=None, return_hidden=False):
        t = self.tokens(x)
        mask = ids_restore = None
        if mask_ratio > 0:
            t, mask, ids_restore, _ = random_masking(t, mask_ratio, noise)
        hidden = []
        for blk in self.blocks:
            t = blk(t)
            if return_hidden:
                hidden.append(t)
        out = self.norm(t)
        return {"last_hidden_state": out, "hidden_states": hidden, "mask": mask, "ids_restore": ids_restore}

    def forward_decoder(self, latent, ids_restore):
        nm = latent.shape[0]
        y = self.decoder_embed(latent)
        y = fill_and_unshuffle(y, self.mask_token, ids_restore)
        c = y.shape[-1]
        y = y.view(nm, self.tp, self.num_joints, c) + self.decoder_pos_embed + self.decoder_temp_embed
        y = y.reshape(nm, self.tp * self.num_joints, c)
        for blk in self.decoder_blocks:
            y = blk(y)
        return self.decoder_pred(self.decoder_norm(y))

    def forward(self, x, mask_ratio=0.9, noise=None):
        """Pretraining loss (random masking; MAMP's motion-aware masking only changes `noise`)."""
        target = mamp_motion_target(x, self.t_patch, normalize=self.norm_skes_loss)
        enc = self.forward_encoder(x, mask_ratio, noise)
        pred = self.forward_decoder(enc["last_hidden_state"], enc["ids_restore"])
        return masked_patch_mse(pred, target, enc["mask"]), pred, enc["mask"]


def mamp_motion_target(x: torch.Tensor, t_patch: int, stride: int = 1, normalize: bool = True):
    """MAMP regression target: frame differences x[t+stride]-x[t] (last `stride` frames 0),
    patchified to [NM, TP*V, t_patch*C] ordered (u, c) (frame-in-segment major), then
    optionally standardised per token with the UNBIASED variance: (y-mean)/sqrt(var+1e-6)."""
    nm, t, v, c = x.shape
    motion = torch.zeros_like(x)
    motion[:, :-stride] = x[:, stride:] - x[:, :-stride]
    tp = t // t_patch
    y = motion.reshape(nm, tp, t_patch, v, c).permute(0, 1, 3, 2, 4).reshape(nm, tp * v, t_patch * c)
    if normalize:
        mean = y.mean(dim=-1, keepdim=True)
        var = y.var(dim=-1, keepdim=True, unbiased=True)
        y = (y - mean) / (var + 1e-6) ** 0.5
    return y


def masked_patch_mse(pred, target, mask):
    """MAMP loss: per-token mean of squared error, averaged over masked tokens (mask=1)."""
    per_token = ((pred - target) ** 2).mean(dim=-1)
    return (per_token * mask).sum() / mask.sum()


# ----------------------------------------------------------------------------------------
# Skeleton2vec flavour
# ----------------------------------------------------------------------------------------

class JointEmbedding(nn.Module):
    """Names: projection.1.weight [D, C, s, 1], projection.1.bias [D],
    spatio_pos_emb [1, D, 1, V], temporal_pos_emb [1, D, TP, 1] (channel-first layouts)."""

    def __init__(self, in_channels: int, segment: int, num_joints: int, num_frames: int, dim: int):
        super().__init__()
        # index 0 holds a parameter-free layout change in the official model
        self.projection = nn.Sequential(nn.Identity(),
                                        nn.Conv2d(in_channels, dim, kernel_size=(segment, 1),
                                                  stride=(segment, 1)))
        self.spatio_pos_emb = nn.Parameter(torch.zeros(1, dim, 1, num_joints))
        self.temporal_pos_emb = nn.Parameter(torch.zeros(1, dim, num_frames // segment, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = embed_segments(x, self.projection[1])  # [NM, TP, V, D]
        nm, tp, v, d = t.shape
        sp = self.spatio_pos_emb[0, :, 0, :v].t()  # [V, D]
        tm = self.temporal_pos_emb[0, :, :tp, 0].t()  # [TP, D]
        t = t + sp.unsqueeze(0) + tm.unsqueeze(1)
        return t.reshape(nm, tp * v, d)


class TransformerStack(nn.Module):
    def __init__(self, depth, dim, num_heads, mlp_ratio=4.0, eps=1e-6, layer_scale=1e-4):
        super().__init__()
        self.layers = nn.ModuleList([Block(dim, num_heads, mlp_ratio, False, eps, layer_scale)
                                     for _ in range(depth)])

    def forward(self, x, return_hidden=False):
        hidden = []
        for layer in self.layers:
            x = layer(x)
            if return_hidden:
                hidden.append(x)
        return x, hidden


class SkTWithDecoder(nn.Module):
    """Skeleton2vec encoder + decoder (names as the official ``SkTWithDecoder``)."""

    def __init__(self, in_channels=3, temporal_segment_size=4, spatio_size=25, temporal_size=120,
                 encoder_emb_size=256, decoder_emb_size=256, encoder_depth=8, decoder_depth=3,
                 num_heads=8, mlp_ratio=4.0, layer_scale_init_value=1e-4, eps=1e-6,
                 using_feat_head=True, using_motion_head=False, with_decoder=True):
        super().__init__()
        self.segment = temporal_segment_size
        self.num_joints = spatio_size
        self.tp = temporal_size // temporal_segment_size
        self.encoder_emb_size = encoder_emb_size
        self.encoder_embedding = JointEmbedding(in_channels, temporal_segment_size, spatio_size,
                                                temporal_size, encoder_emb_size)
        self.encoder = TransformerStack(encoder_depth, encoder_emb_size, num_heads, mlp_ratio, eps,
                                        layer_scale_init_value)
        self.encoder_norm = nn.LayerNorm(encoder_emb_size, eps=eps)
        self.with_decoder = with_decoder
        if with_decoder:
            dd = decoder_emb_size
            self.decoder_embedding = nn.Linear(encoder_emb_size, dd)
            self.decoder = TransformerStack(decoder_depth, dd, num_heads, mlp_ratio, eps,
                                            layer_scale_init_value)
            self.decoder_norm = nn.LayerNorm(dd, eps=eps)
            self.using_feat_head = using_feat_head
            self.using_motion_head = using_motion_head
            if using_feat_head:
                self.decoder_feat_head = nn.Linear(dd, encoder_emb_size)
            if using_motion_head:
                self.decoder_motion_head = nn.Linear(dd, temporal_segment_size * in_channels)
            self.decoder_spatio_pos_emb = nn.Parameter(torch.zeros(1, dd, 1, spatio_size))
            self.decoder_temporal_pos_emb = nn.Parameter(torch.zeros(1, dd, self.tp, 1))
            self.mask_token_emb = nn.Parameter(torch.zeros(1, 1, dd))
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("pos_emb") or name == "mask_token_emb":
                nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)

    def forward_encoder(self, x, mask_ratio=0.0, noise=None, return_hidden=True):
        t = self.encoder_embedding(x)
        mask = ids_restore = None
        if mask_ratio > 0:
            t, mask, ids_restore, _ = random_masking(t, mask_ratio, noise)
        t, hidden = self.encoder(t, return_hidden=return_hidden)
        # hidden_states are the raw block outputs (before encoder_norm)
        return {"last_hidden_state": self.encoder_norm(t), "hidden_states": hidden,
                "mask": mask, "ids_restore": ids_restore}

    def forward_decoder(self, latent, ids_restore):
        nm = latent.shape[0]
        y = self.decoder_embedding(latent)
        y = fill_and_unshuffle(y, self.mask_token_emb, ids_restore)
        c = y.shape[-1]
        sp = self.decoder_spatio_pos_emb[0, :, 0, :].t()
        tm = self.decoder_temporal_pos_emb[0, :, :, 0].t()
        y = y.view(nm, self.tp, self.num_joints, c) + sp.unsqueeze(0) + tm.unsqueeze(1)
        y = y.reshape(nm, self.tp * self.num_joints, c)
        y, _ = self.decoder(y)
        y = self.decoder_norm(y)
        out = {}
        if self.using_feat_head:
            out["feat"] = self.decoder_feat_head(y)
        if self.using_motion_head:
            out["motion"] = self.decoder_motion_head(y)
        return out

    def forward(self, x, mask_ratio=0.9, noise=None):
        enc = self.forward_encoder(x, mask_ratio, noise, return_hidden=False)
        return self.forward_decoder(enc["last_hidden_state"], enc["ids_restore"]), enc["mask"]


def s2v_targets(hidden_states: Sequence[torch.Tensor], top_k: int, per_layer: str = "instance_norm",
                normalize_targets: bool = True) -> torch.Tensor:
    """Teacher targets: average of the last `top_k` block outputs, each normalised first.

    per_layer="instance_norm": per sequence and channel over the token axis (F.instance_norm,
    biased variance, eps 1e-5, no affine) - the official NTU configs.
    per_layer="layer_norm": per token over channels (F.layer_norm, eps 1e-5, no affine).
    normalize_targets: final F.layer_norm over channels (eps 1e-5, no affine).
    """
    ys = list(hidden_states)[-top_k:]
    normed = []
    for h in ys:
        if per_layer == "instance_norm":
            normed.append(F.instance_norm(h.transpose(1, 2)).transpose(1, 2))
        elif per_layer == "layer_norm":
            normed.append(F.layer_norm(h, h.shape[-1:]))
        else:
            raise ValueError(per_layer)
    y = sum(normed) / len(normed)
    if normalize_targets:
        y = F.layer_norm(y, y.shape[-1:])
    return y


def s2v_masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Skeleton2vec loss: MSE over all channels of the masked tokens (mask=1), mean reduction."""
    sel = mask.reshape(-1).bool()
    c = pred.shape[-1]
    return F.mse_loss(pred.reshape(-1, c)[sel], target.reshape(-1, c)[sel])


class EMA(nn.Module):
    """Teacher holder; state_dict names ``ema.model.<auto_encoder name>``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        import copy
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float):
        """teacher <- decay * teacher + (1 - decay) * student, for every parameter."""
        t_params = [p for p in self.model.parameters()]
        s_params = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(t_params, decay)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - decay)


class Skeleton2Vec2(nn.Module):
    """Student (auto_encoder) + EMA teacher (ema.model) with data2vec-style feature targets."""

    def __init__(self, top_k: Optional[int] = None, per_layer: str = "instance_norm",
                 normalize_targets: bool = True, ema_decay: float = 0.9999, **model_args):
        super().__init__()
        self.auto_encoder = SkTWithDecoder(**model_args)
        self.ema = EMA(self.auto_encoder)
        depth = len(self.auto_encoder.encoder.layers)
        self.top_k = top_k or depth
        self.per_layer = per_layer
        self.normalize_targets = normalize_targets
        self.ema_decay = ema_decay

    def forward(self, x, mask_ratio=0.9, noise=None):
        pred, mask = self.auto_encoder(x, mask_ratio, noise)
        with torch.no_grad():
            teacher = self.ema.model
            hid = teacher.forward_encoder(x, 0.0, return_hidden=True)["hidden_states"]
            target = s2v_targets(hid, self.top_k, self.per_layer, self.normalize_targets)
        return s2v_masked_mse(pred["feat"], target, mask)

    def ema_step(self, decay: Optional[float] = None):
        self.ema.update(self.auto_encoder, self.ema_decay if decay is None else decay)


# ----------------------------------------------------------------------------------------
# losses, optimiser and schedules used by the training recipes
# ----------------------------------------------------------------------------------------

def weight_decay_groups(model: nn.Module, weight_decay: float, skip: Sequence[str] = ()):
    """timm-style groups: no decay for 1-D tensors, biases and names in `skip`;
    parameters with requires_grad=False (the EMA teacher) are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


S2V_NO_WEIGHT_DECAY = ("auto_encoder.decoder_spatio_pos_emb", "auto_encoder.decoder_temporal_pos_emb",
                       "auto_encoder.encoder_embedding.spatio_pos_emb",
                       "auto_encoder.encoder_embedding.temporal_pos_emb")


def cosine_lr(epoch: float, base_lr: float, min_lr: float, warmup_epochs: float, total_epochs: float):
    """Linear warm-up from 0, then half-cycle cosine to min_lr (MAE / MAMP / Skeleton2vec).
    `epoch` is fractional: step_index / steps_per_epoch + epoch_index."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    progress = (epoch - warmup_epochs) / (total_epochs - warmup_epochs)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_annealed_decay(start: float, end: float, step: int, anneal_end_step: int) -> float:
    """Skeleton2vec / data2vec EMA decay: linear from start to end over anneal_end_step updates."""
    if step >= anneal_end_step:
        return end
    return end - (end - start) * (1 - step / anneal_end_step)


def info_nce_with_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float):
    """MoCo-style InfoNCE. q, k: [B, D] (L2-normalised inside), queue: [K, D] negatives
    (rows already normalised).  logits = [q.k, q.queue^T] / T, label 0 for every row."""
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.t()
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels), logits


# ----------------------------------------------------------------------------------------
# configs and FLOP model
# ----------------------------------------------------------------------------------------

CONFIGS: Dict[str, dict] = {
    "tiny": dict(dim=64, depth=2, heads=4, decoder_depth=1, frames=32, patch=4, joints=25, batch=16),
    "small": dict(dim=128, depth=4, heads=4, decoder_depth=2, frames=64, patch=4, joints=25, batch=32),
    "paper": dict(dim=256, depth=8, heads=8, decoder_depth=3, frames=120, patch=4, joints=25, batch=8),
}


def s2v_model_from_config(cfg: dict, **kw) -> Skeleton2Vec2:
    return Skeleton2Vec2(in_channels=3, temporal_segment_size=cfg["patch"], spatio_size=cfg["joints"],
                         temporal_size=cfg["frames"], encoder_emb_size=cfg["dim"],
                         decoder_emb_size=cfg["dim"], encoder_depth=cfg["depth"],
                         decoder_depth=cfg["decoder_depth"], num_heads=cfg["heads"], **kw)


def block_matmul_flops(tokens: int, dim: int, mlp_ratio: float = 4.0) -> float:
    """Forward multiply-add FLOPs (2 per MAC) of one block on one sequence of `tokens`."""
    h = dim * mlp_ratio
    proj = 2 * tokens * dim * (3 * dim + dim + 2 * h)
    attn = 2 * 2 * tokens * tokens * dim
    return proj + attn


# ----------------------------------------------------------------------------------------
# PCM3 flavour (SkelLab's methods guide (docs/methods.md) section 7)
# ----------------------------------------------------------------------------------------
#
# Our own implementation of the PCM3 pretraining model ("PCM3_wprompt": MoCo v2 with the
# stepwise two-direction GRU, prompts, masked motion prediction and vMix), written from
# methods.md section 7 and the PCM3 rows of Tests/Fixtures/README.md.  No official code is
# copied.  state_dict names, shapes and registration order, the initialisation and the order
# of the floating-point operations follow the official MoCo (github JHang2020/PCM3,
# moco/builder_mask_recons.py + moco/GRU.py, commit aee2400), so that its checkpoints load
# with strict=True and one training step gives the official numbers (checked by
# bench/torch_ref/check_pcm3.py against the pcm3_step_tiny fixture and the official code).
# Layouts: views [N, C, T, V, M]; mask [N, T, M, V, C] with 1 = visible; the GRU input per
# frame is the 150-vector x.permute(0, 2, 3, 1, 4).reshape(N, T, 150) (index v*6 + c*2 + m).

# the official body_parts (0-based joints): trunk, left hand, right hand, left leg, right leg
PCM3_BODY_PARTS = ((3, 2, 20, 1, 0), (8, 9, 10, 11, 23, 24), (4, 5, 6, 7, 21, 22), (16, 17, 18, 19),
                   (12, 13, 14, 15))


class StepwiseGRU(nn.Module):
    """The PCM3 encoder GRU (official ``EncoderRNN``; holds ``gru``, a bidirectional
    multi-layer ``nn.GRU``, batch_first).  x [N, T, F] -> [N, T, 2H] = top layer
    [forward, "reverse"] at every frame.

    Reference quirk (methods.md 7.1): the official code calls the GRU once per frame on a
    length-1 slice with the carried state, so BOTH directions run forward in time: at frame t
    and layer l the cells ``*_l{l}`` and ``*_l{l}_reverse`` each update their own state from
    the same input (the frame for l = 0, else [forward_{l-1}(t), reverse_{l-1}(t)]).

    impl "stepwise" (default) drives nn.GRU exactly that way (T calls).  impl "layerwise"
    computes the same function with one full-sequence, one-direction GRU call per layer and
    direction (a layer depends only on the layer below, so the whole sequence of layer l-1 can
    be computed first, and the input projections of all frames become one matrix product).  It
    is NOT what the official code runs; it differs from "stepwise" by float32 rounding only.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, impl: str = "stepwise"):
        super().__init__()
        if impl not in ("stepwise", "layerwise"):
            raise ValueError(impl)
        self.impl = impl
        self.gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, bidirectional=True,
                          batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "stepwise":
            outs, h = [], None
            for t in range(x.shape[1]):
                o, h = self.gru(x[:, t:t + 1], h)
                outs.append(o)
            return torch.cat(outs, 1)
        g = self.gru
        inp = x
        h0 = x.new_zeros(1, x.shape[0], g.hidden_size)
        for l in range(g.num_layers):
            outs = []
            for sfx in ("", "_reverse"):
                w = [getattr(g, f"{n}_l{l}{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                outs.append(torch._VF.gru(inp, h0, w, True, 1, 0.0, self.training, False, True)[0])
            inp = torch.cat(outs, 2)
        return inp


def pcm3_add_feature_prompt(feat: torch.Tensor, prompt: torch.Tensor, st: int, half_width: int) -> None:
    """In place: prompt [1, 2P]; add prompt[0, :P] to feat[:, st:st+P] and prompt[0, P:] to
    feat[:, H+st:H+st+P] (H = half_width, one GRU direction).  feat [R, 2H]."""
    p = prompt.shape[1] // 2
    h = half_width
    feat[:, h + st:h + st + p] += prompt[:, p:]
    feat[:, st:st + p] += prompt[:, 0:p]


class PCM3Encoder(nn.Module):
    """Official ``BIGRU`` with the MoCo projector.  Names: ``encoder.gru.*``, ``fc.0.*``
    (Linear 2H->2H), ``fc.2.*`` (Linear 2H->dim; ReLU between), ``input_norm.*``
    (BatchNorm1d over the per-frame input vectors, statistics over batch and time)."""

    def __init__(self, input_size: int, hidden: int, layers: int, dim: int, gru_impl: str = "stepwise"):
        super().__init__()
        self.hidden = hidden
        # registration order as the official module: encoder, fc, input_norm
        self.encoder = StepwiseGRU(input_size, hidden, layers, gru_impl)
        self.fc = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, dim))
        self.input_norm = nn.BatchNorm1d(input_size)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, T, F] -> per-frame features [N, T, 2H] (input BatchNorm, stepwise GRU)."""
        x = self.input_norm(x.permute(0, 2, 1).contiguous()).permute(0, 2, 1).contiguous()
        return self.encoder(x)

    def feature(self, x: torch.Tensor, prompt: Optional[torch.Tensor] = None, st: int = 0) -> torch.Tensor:
        """Sequence feature = last-frame output [N, 2H], plus the feature prompt if given."""
        f = self.sequence(x)[:, -1].clone()
        if prompt is not None:
            pcm3_add_feature_prompt(f, prompt, st, self.hidden)
        return f

    def forward(self, x: torch.Tensor, prompt: Optional[torch.Tensor] = None, st: int = 0) -> torch.Tensor:
        """Projector output (not normalised) [N, dim]."""
        return self.fc(self.feature(x, prompt, st))


class PCM3Decoder(nn.Module):
    """Official ``DEC``: ``decoder`` = 2-layer unidirectional nn.GRU (width P, batch_first, run
    over the whole sequence from a zero state), then ``reconstruction`` = Linear P -> 150."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.decoder = nn.GRU(input_size=hidden, hidden_size=hidden, num_layers=2, batch_first=True)
        self.reconstruction = nn.Linear(hidden, input_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y, _ = self.decoder(z)
        return self.reconstruction(y)


@torch.no_grad()
def pcm3_mix(x: torch.Tensor, n: int, parts: Sequence[int], ct: int, tem_idx: int, p: float,
             lamb: Optional[float] = None, seg: int = 4):
    """vMix (official ``MoCo.ske_swap``, methods.md 7.2).  x [N, C, T, V, M].
    index[i] = (i + n) mod N; joints = sorted union of PCM3_BODY_PARTS[parts]; region = frames
    [seg*tem_idx, seg*(tem_idx+ct)) x joints x both bodies x all coords.  p > 0.5: swap (copy
    the partner's region); 0.25 < p <= 0.5: paste (the partner's first min(2*seg*ct, T) frames,
    nearest-resized to seg*ct frames by F.interpolate); else mixup (1-lamb) x + lamb x[index].
    Returns (index [N], mixed clip, region map [T//seg, V] (1 inside; lamb for mixup))."""
    N, C, T, V, M = x.shape
    idx = (torch.arange(N, device=x.device) + n) % N
    joints = sorted(j for q in parts for j in PCM3_BODY_PARTS[q])
    a, rt = seg * tem_idx, seg * ct
    region = torch.zeros(T // seg, V, dtype=x.dtype, device=x.device)
    out = x.clone()
    if p > 0.5:
        out[:, :, a:a + rt, joints, :] = out[idx][:, :, a:a + rt, joints, :]
        region[tem_idx:tem_idx + ct, joints] = 1
    elif p > 0.25:
        src = out[:, :, :2 * rt].permute(0, 4, 3, 1, 2).contiguous().view(N * M, V * C, -1)
        src = F.interpolate(src, size=rt)  # mode 'nearest': source frame floor(j * Tin / rt)
        src = src.view(N, M, V, C, rt).permute(0, 3, 4, 2, 1).contiguous()
        out[:, :, a:a + rt, joints, :] = src[idx][:, :, :, joints, :]
        region[tem_idx:tem_idx + ct, joints] = 1
    else:
        out = out * (1 - lamb) + out[idx] * lamb
        region = region + lamb
    return idx, out, region


def pcm3_body_part_mask(n: int, t: int, rng: random.Random, chunk: int = 8, mask_ratio: float = 0.6,
                        joints: int = 25, bodies: int = 2, coords: int = 3) -> torch.Tensor:
    """PCM3 body-part mask (official utils.Jointmask3, methods.md 4.4): for each chunk of
    `chunk` frames hide int(5 * mask_ratio) = 3 of the 5 body parts (all coords); one mask
    shared by the batch; body 2 always visible.  Returns [N, T, M, V, C], 1 = visible."""
    m = torch.ones(t, joints)
    for c in range(math.ceil(t / chunk)):
        hidden = sorted(j for q in rng.sample(range(5), int(5 * mask_ratio)) for j in PCM3_BODY_PARTS[q])
        m[c * chunk:(c + 1) * chunk, hidden] = 0.0
    m = m.reshape(1, t, 1, joints, 1).repeat(n, 1, bodies, 1, coords)
    m[:, :, 1] = 1.0
    return m


def _pcm3_kld(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(softmax(targets) || softmax(inputs)) summed over the queue, averaged over the batch."""
    return F.kl_div(F.log_softmax(inputs, dim=1), F.softmax(targets, dim=1), reduction="batchmean")


class PCM3(nn.Module):
    """PCM3 pretraining model (with prompts), methods.md 7.1-7.5.

    Names as the official MoCo(pretrain=True, mlp=True): ``cl_prompt``, ``mp_prompt`` [1, 2P];
    ``base_prompt``, ``mask_prompt``, ``recons_prompt``, ``mix_prompt`` [1, 1, 150];
    ``encoder_q.*`` / ``encoder_k.*`` (PCM3Encoder; the key encoder is a momentum copy without
    gradients); ``linear.{0,1,3}.*`` (Linear 2H->pred, BatchNorm1d, ReLU, Linear pred->pred);
    ``recons_decoder.*`` (PCM3Decoder); buffers ``queue`` [dim, K] (one unit key per column)
    and ``queue_ptr`` [1].  Official sizes: hidden 1024, layers 3, dim 128, K 16384, prompts
    of 256 (halves of 128), pred 512, mix segments 7..11 of 4 frames.

    forward() is one loss evaluation: official ``forward_pcm3_wprompt`` followed by the loss
    lines of pretrain_moco_mask.py.  Like the official forward it also updates the key encoder
    (momentum, before the key pass), BatchNorm running statistics, and enqueues the keys.
    """

    def __init__(self, hidden: int = 1024, layers: int = 3, dim: int = 128, K: int = 16384,
                 m: float = 0.999, T: float = 0.07, teacher_T: float = 0.05, student_T: float = 0.1,
                 cmd_weight: float = 1.0, prompt_dim: int = 256, pred: int = 512,
                 tem: Tuple[int, int] = (7, 11), input_size: int = 150, rec_weight: float = 40.0,
                 gru_impl: str = "stepwise", seed: Optional[int] = None):
        super().__init__()
        if prompt_dim % 2 or prompt_dim // 2 >= hidden:
            raise ValueError("prompt_dim must be even and prompt_dim/2 < hidden")
        self.hidden, self.prompt_half, self.dim, self.K = hidden, prompt_dim // 2, dim, K
        self.m, self.T, self.teacher_T, self.student_T = m, T, teacher_T, student_T
        self.cmd_weight, self.rec_weight, self.tem = cmd_weight, rec_weight, tuple(tem)
        self.rng = random.Random(seed)
        # registration order as the official module
        self.cl_prompt = nn.Parameter(torch.zeros(1, prompt_dim))
        self.mp_prompt = nn.Parameter(torch.zeros(1, prompt_dim))
        self.base_prompt = nn.Parameter(torch.zeros(1, 1, input_size))
        self.mask_prompt = nn.Parameter(torch.zeros(1, 1, input_size))
        self.recons_prompt = nn.Parameter(torch.zeros(1, 1, input_size))
        self.mix_prompt = nn.Parameter(torch.zeros(1, 1, input_size))
        self.encoder_q = PCM3Encoder(input_size, hidden, layers, dim, gru_impl)
        self.encoder_k = PCM3Encoder(input_size, hidden, layers, dim, gru_impl)
        self.linear = nn.Sequential(nn.Linear(2 * hidden, pred), nn.BatchNorm1d(pred), nn.ReLU(inplace=True),
                                    nn.Linear(pred, pred))
        self.recons_decoder = PCM3Decoder(input_size, pred)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self):
        """Official init: Xavier-uniform prompts; GRU default init, then Xavier-uniform on every
        2-D weight of the encoder GRU and on the original fc (now fc.2); fc.0, linear and the
        decoder keep PyTorch defaults; key encoder = copy of the query encoder."""
        with torch.no_grad():
            for p in (self.cl_prompt, self.mp_prompt, self.base_prompt, self.mask_prompt,
                      self.recons_prompt, self.mix_prompt):
                nn.init.xavier_uniform_(p)
            enc = self.encoder_q
            for p in list(enc.encoder.parameters()) + [enc.fc[2].weight]:
                if p.dim() == 2:
                    nn.init.xavier_uniform_(p)
            for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                pk.copy_(pq)
                pk.requires_grad = False

    def set_gru_impl(self, impl: str) -> None:
        """Switch both encoders between "stepwise" (official calls) and "layerwise"."""
        if impl not in ("stepwise", "layerwise"):
            raise ValueError(impl)
        for enc in (self.encoder_q, self.encoder_k):
            enc.encoder.impl = impl

    def draw(self, n: int, t: int) -> dict:
        """The random choices of one forward (what the official code draws inside it):
        st = 6 feature-prompt offsets in order of use (q, seq_feat, mask_q, recons_q, pc, k),
        each U{0..H-P-1}; the vMix draws n ~ U{1..N-2}, parts (2 or 3 of the 5 body parts),
        ct ~ U{tem}, tem_idx ~ U{0..T//4-ct}, p ~ U(0,1), lamb ~ U(0,1) if p <= 0.25."""
        r = self.rng
        hi = self.hidden - self.prompt_half - 1
        d = {"n": r.randint(1, n - 2)}
        d["parts"] = r.sample(range(5), r.randint(2, 3))
        d["ct"] = r.randint(*self.tem)
        d["tem_idx"] = r.randint(0, t // 4 - d["ct"])
        d["p"] = r.random()
        d["lamb"] = r.random() if d["p"] <= 0.25 else None
        d["st"] = [r.randint(0, hi) for _ in range(6)]
        return d

    @torch.no_grad()
    def momentum_update(self):
        """encoder_k <- m * encoder_k + (1 - m) * encoder_q, every parameter (not the buffers)."""
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            pk.mul_(self.m).add_(pq * (1.0 - self.m))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor):
        """keys [N, dim] -> queue columns ptr..ptr+N-1 (no wrap-around: K % N must be 0)."""
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        self.queue[:, ptr:ptr + n] = keys.T
        self.queue_ptr[0] = (ptr + n) % self.K

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, mask: torch.Tensor,
                draws: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """v1 (query), v2 (key), v3 (to be masked): [N, C, T, V, M]; mask [N, T, M, V, C]
        (1 = visible).  draws: see draw() (drawn from self.rng if None).
        Returns a dict: "loss" (the total the official training loop backpropagates), its
        terms and intermediate tensors, named as in the pcm3_step_tiny fixture."""
        N, C, T, V, M = v1.shape
        if self.K % N:
            raise ValueError(f"queue size {self.K} must be divisible by the batch {N}")
        d = self.draw(N, T) if draws is None else draws
        st, H = d["st"], self.hidden
        flat = lambda x: x.permute(0, 2, 3, 1, 4).reshape(N, T, V * C * M)  # noqa: E731
        mask_flat = mask.permute(0, 1, 3, 4, 2).reshape(N, T, V * C * M)
        x_mask = flat(v3) * mask_flat  # vM
        mix_index, v_mix, region = pcm3_mix(v1, d["n"], d["parts"], d["ct"], d["tem_idx"], d["p"],
                                            d.get("lamb"))
        lam = region.mean()
        enc, o = self.encoder_q, {}

        # query (v1)
        o["feat.q"] = enc.feature(flat(v1) + self.base_prompt, self.cl_prompt, st[0])
        q = F.normalize(enc.fc(o["feat.q"]), dim=1)
        # masked view: per-frame features -> masked motion prediction; last frame -> mask_q
        seq = enc.sequence(x_mask + self.mask_prompt)
        seq_copy = seq.clone()
        D = seq.shape[-1]
        seq = seq.reshape(N * T, D)
        pcm3_add_feature_prompt(seq, self.mp_prompt, st[1], H)
        o["seq_feat"] = seq.reshape(N, T, D)
        # the same head on detached features gives the predicted view (no gradient into the
        # encoder through it; linear and recons_decoder still get one)
        recons_cl = self.recons_decoder(self.linear(seq.clone().detach()).reshape(N, T, -1))
        recons = self.recons_decoder(self.linear(seq).reshape(N, T, -1))
        recons_data = recons.reshape(N, T, V, C, M).permute(0, 3, 1, 2, 4)  # N C T V M
        mq = seq_copy[:, -1, :]
        pcm3_add_feature_prompt(mq, self.cl_prompt, st[2], H)
        o["feat.mask_q"] = mq
        mask_q = F.normalize(enc.fc(mq), dim=1)
        # predicted view
        pred_view = recons_cl * (1 - mask_flat) + x_mask * mask_flat
        o["feat.recons_q"] = enc.feature(pred_view + self.recons_prompt, self.cl_prompt, st[3])
        recons_q = F.normalize(enc.fc(o["feat.recons_q"]), dim=1)
        # mixed view
        o["feat.pc"] = enc.feature(flat(v_mix) + self.mix_prompt, self.cl_prompt, st[4])
        pc = F.normalize(enc.fc(o["feat.pc"]), dim=1)
        # key (v2): momentum update first, no gradient
        with torch.no_grad():
            self.momentum_update()
            o["feat.k"] = self.encoder_k.feature(flat(v2) + self.base_prompt, self.cl_prompt, st[5])
            k = F.normalize(self.encoder_k.fc(o["feat.k"]), dim=1)
            kc = F.normalize(k * (1 - lam) + k[mix_index] * lam, dim=1)

        queue = self.queue.clone()  # the official code uses queue.clone().detach() in each product

        def logits(a, b):
            pos = torch.einsum("nc,nc->n", [a, b]).unsqueeze(-1)
            neg = torch.einsum("nc,ck->nk", [a, queue])
            return torch.cat([pos, neg], dim=1) / self.T, neg

        o["logits"], neg_q = logits(q, k)
        o["logits_mask"], neg_mask = logits(mask_q, k)
        o["logits_recons"], neg_rec = logits(recons_q, k)
        o["logits_mix"], neg_mix = logits(pc, kc)
        k_neg = torch.einsum("nc,ck->nk", [k, queue])
        kc_neg = torch.einsum("nc,ck->nk", [kc, queue])
        sT, tT = self.student_T, self.teacher_T
        o["kl.base"] = _pcm3_kld(neg_q / sT, k_neg / tT)
        o["kl.mix"] = _pcm3_kld(neg_mix / sT, kc_neg / tT)
        o["kl.mask"] = _pcm3_kld(neg_mask / sT, k_neg / tT)
        o["kl.recons"] = _pcm3_kld(neg_rec / sT, k_neg / tT)
        o["loss_sim"] = (o["kl.base"] + o["kl.mix"] + o["kl.mask"] + o["kl.recons"]) * self.cmd_weight
        self.enqueue(k)

        # the loss lines of the official training loop
        labels = torch.zeros(N, dtype=torch.long, device=v1.device)
        o["loss_base"] = F.cross_entropy(o["logits"], labels)
        o["loss_mix"] = F.cross_entropy(o["logits_mix"], labels)
        hidden = (1.0 - mask).permute(0, 4, 1, 3, 2)  # N C T V M, 1 = masked
        o["loss_rec"] = (((recons_data - v3) * hidden) ** 2).sum() / hidden.sum()
        o["loss_mp_mask"] = F.cross_entropy(o["logits_mask"], labels)
        o["loss_mp_recons"] = F.cross_entropy(o["logits_recons"], labels)
        o["loss_mp"] = o["loss_mp_mask"] + o["loss_mp_recons"]
        o["loss"] = o["loss_base"] + o["loss_mix"] + o["loss_sim"] + o["loss_rec"] * self.rec_weight + o["loss_mp"]
        o.update({"q": q, "k": k, "kc": kc, "mask_q": mask_q, "recons_q": recons_q, "pc": pc,
                  "recons_data": recons_data, "mix_view": v_mix, "mix_index": mix_index,
                  "mix_region": region, "lam": lam,
                  "pred_view": pred_view.detach().reshape(N, T, V, C, M).permute(0, 3, 1, 2, 4)})
        return o


PCM3_CONFIGS: Dict[str, dict] = {
    # hidden = one GRU direction (feature 2*hidden); dim = projector output; K = queue;
    # prompt = feature-prompt width (two halves); pred = prediction head / decoder width;
    # tem = vMix segment range (segments of 4 frames)
    "tiny": dict(hidden=64, layers=2, dim=32, K=256, prompt=16, pred=32, frames=32, tem=(3, 5), batch=16),
    "small": dict(hidden=256, layers=3, dim=128, K=4096, prompt=64, pred=128, frames=64, tem=(7, 11), batch=32),
    "paper": dict(hidden=1024, layers=3, dim=128, K=16384, prompt=256, pred=512, frames=64, tem=(7, 11),
                  batch=128),
}
# official recipe (script_pretrain_moco.sh / pretrain_moco_mask.py): SGD over model.parameters()
PCM3_RECIPE = dict(m=0.999, T=0.07, teacher_T=0.05, student_T=0.1, cmd_weight=1.0, rec_weight=40.0,
                   lr=0.02, momentum=0.9, weight_decay=1e-4, mask_ratio=0.6, mask_chunk=8)


def pcm3_model_from_config(cfg: dict, **kw) -> PCM3:
    r = PCM3_RECIPE
    return PCM3(hidden=cfg["hidden"], layers=cfg["layers"], dim=cfg["dim"], K=cfg["K"], m=r["m"], T=r["T"],
                teacher_T=r["teacher_T"], student_T=r["student_T"], cmd_weight=r["cmd_weight"],
                prompt_dim=cfg["prompt"], pred=cfg["pred"], tem=cfg["tem"], rec_weight=r["rec_weight"], **kw)


def pcm3_optimizer(model: nn.Module, lr: float = PCM3_RECIPE["lr"]) -> torch.optim.SGD:
    """The official optimiser: SGD over all parameters (the key encoder has no gradients and
    is skipped), momentum 0.9, weight decay 1e-4 on everything (prompts, biases, BatchNorm)."""
    return torch.optim.SGD(model.parameters(), lr, momentum=PCM3_RECIPE["momentum"],
                           weight_decay=PCM3_RECIPE["weight_decay"])
