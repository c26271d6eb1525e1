"""CPU speed reference for the skeleton SSL models (PyTorch, 2 threads).

Usage (from this folder, inside the bench virtualenv):

    python bench.py                                  # all configs, modes s2v_train,encode,mamp_train
    python bench.py --configs tiny,small --attn both --out results.jsonl
    python bench.py --configs tiny,small --modes pcm3_train          # PCM3, our implementation
    python bench.py --configs small --modes pcm3_train --pcm3-official   # the official code

Every (config, mode, attention) measurement runs in a fresh subprocess so that the peak
RSS reported (getrusage ru_maxrss) belongs to that measurement alone.  Each prints one JSON
line; the parent echoes them (and appends them to --out if given).

Modes
  s2v_train    one Skeleton2vec training step: EMA-teacher forward on all tokens (no grad,
               hidden states of every block, per-layer instance norm, average of top-K=depth,
               final layer norm), student encoder on the 10% visible tokens (random masking,
               ratio 0.9), decoder on all tokens, MSE on masked tokens, backward, AdamW
               (lr 1e-3, betas 0.9/0.95, wd 0.05 with timm-style no-decay groups), EMA update.
  mamp_train   one MAMP step: encoder on visible tokens, decoder on all tokens, masked MSE
               against normalised motion targets, backward, AdamW (no teacher).
  encode       encoder forward only (embedding + blocks + final norm) on all tokens under
               torch.inference_mode(); throughput in sequences per second.
  pcm3_train   one PCM3 (with prompts) training step, model.PCM3 (our implementation, same numbers
               as the official code): from the three views and the body-part mask, the masked
               view vM, the mixed view vMix, 4 query passes of the stepwise GRU encoder (v1, vM
               with all per-frame features, the predicted view, vMix), the prediction head and
               GRU decoder (twice: on detached and on attached features), the momentum update of
               the key encoder and the key pass, InfoNCE x4 + similarity-distillation KL x4 against
               the queue, 40 x masked-motion MSE, backward, SGD (lr 0.02, momentum 0.9, wd 1e-4),
               enqueue.  The views v1, v2, v3 (random) and the mask (official Jointmask3 rule) are
               made once, before timing: in the official loop the views come from DataLoader
               workers and the mask costs < 1 ms.  Not in the default --modes (paper = batch
               128 takes minutes per step on 2 cores: use --paper-batch).  --attn does not apply
               (run once, "attn": "none").  --pcm3-official times the official MoCo
               (forward_pcm3_wprompt + the loss lines of pretrain_moco_mask.py) instead; it needs
               bench/torch_ref/pcm3_official.py and a git copy of JHang2020/PCM3 ($PCM3_GITDIR).
               --pcm3-gru layerwise: same maths, one full-sequence GRU call per layer and
               direction instead of the official per-frame calls (a faster PyTorch path).
               On a shared machine set OMP_WAIT_POLICY=PASSIVE (see bench/README.md).

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over one step (matmuls,
convolutions and attention; forward and backward), so GFLOP/s = counted FLOPs / median time.
(pcm3_train counts them during its first warm-up step, which is therefore required.)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def summarize(ts):
    ts = sorted(ts)
    return {"median_ms": round(1e3 * statistics.median(ts), 3), "min_ms": round(1e3 * ts[0], 3),
            "max_ms": round(1e3 * ts[-1], 3), "n": len(ts)}


def run_single(config: str, mode: str, attn: str, batch: int | None, warmup: int, iters: int,
               threads: int, pcm3_official: bool = False, pcm3_gru: str = "stepwise") -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, HERE)
    import model as M

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mode == "pcm3_train":
        return run_pcm3(config, batch, warmup, iters, pcm3_official, pcm3_gru)
    M.set_attention_impl(attn)
    rss_import = current_rss_mb()
    cfg = dict(M.CONFIGS[config])
    if batch:
        cfg["batch"] = batch
    b, t, v = cfg["batch"], cfg["frames"], cfg["joints"]
    x = torch.randn(b, t, v, 3)
    tokens = (t // cfg["patch"]) * v
    res = {"config": config, "mode": mode, "attn": attn, "threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
           "batch": b, "frames": t, "joints": v, "tokens_per_seq": tokens,
           "visible_tokens_per_seq": int(tokens * (1 - 0.9)), **{k: cfg[k] for k in
                                                               ("dim", "depth", "heads",
                                                                "decoder_depth", "patch")},
           "torch": torch.__version__}

    if mode == "encode":
        net = M.SkTWithDecoder(temporal_segment_size=cfg["patch"], spatio_size=v, temporal_size=t,
                               encoder_emb_size=cfg["dim"], encoder_depth=cfg["depth"],
                               num_heads=cfg["heads"], with_decoder=False).eval()
        res["params"] = sum(p.numel() for p in net.parameters())

        def step():
            with torch.inference_mode():
                return net.forward_encoder(x, 0.0, return_hidden=False)["last_hidden_state"]

        with FlopCounterMode(display=False) as fc:
            step()
        flops = fc.get_total_flops()
        for _ in range(warmup):
            step()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        res.update(summarize(ts))
        res["seq_per_s"] = round(b / statistics.median(ts), 2)
    else:
        if mode == "s2v_train":
            net = M.s2v_model_from_config(cfg, per_layer="instance_norm")
            groups = M.weight_decay_groups(net, 0.05, M.S2V_NO_WEIGHT_DECAY)
            student = net.auto_encoder
            res["params"] = sum(p.numel() for p in student.parameters())
        elif mode == "mamp_train":
            net = M.MAMPTransformer(dim_feat=cfg["dim"], decoder_dim_feat=cfg["dim"],
                                    depth=cfg["depth"], decoder_depth=cfg["decoder_depth"],
                                    num_heads=cfg["heads"], num_frames=t, num_joints=v,
                                    t_patch_size=cfg["patch"])
            groups = M.weight_decay_groups(net, 0.05)
            res["params"] = sum(p.numel() for p in net.parameters())
        else:
            raise ValueError(mode)
        opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
        net.train()
        stages = {k: [] for k in ("teacher", "student_fwd", "backward", "optimizer", "ema")}

        def step(record=True):
            c0 = time.perf_counter()
            if mode == "s2v_train":
                with torch.no_grad():
                    hid = net.ema.model.forward_encoder(x, 0.0, return_hidden=True)["hidden_states"]
                    target = M.s2v_targets(hid, net.top_k, net.per_layer, net.normalize_targets)
                c1 = time.perf_counter()
                pred, mask = student(x, 0.9)
                loss = M.s2v_masked_mse(pred["feat"], target, mask)
            else:
                c1 = time.perf_counter()
                loss = net(x, 0.9)[0]
            c2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            c3 = time.perf_counter()
            opt.step()
            c4 = time.perf_counter()
            if mode == "s2v_train":
                net.ema_step(0.9999)
            c5 = time.perf_counter()
            if record:
                for k, a, z in (("teacher", c0, c1), ("student_fwd", c1, c2), ("backward", c2, c3),
                                ("optimizer", c3, c4), ("ema", c4, c5)):
                    stages[k].append(z - a)
            return c5 - c0

        with FlopCounterMode(display=False) as fc:
            step(record=False)
        flops = fc.get_total_flops()
        for _ in range(warmup):
            step(record=False)
        ts = [step() for _ in range(iters)]
        res.update(summarize(ts))
        keep = stages.keys() if mode == "s2v_train" else ("student_fwd", "backward", "optimizer")
        res["stage_median_ms"] = {k: round(1e3 * statistics.median(stages[k]), 3) for k in keep}
        res["seq_per_s"] = round(b / statistics.median(ts), 2)
    res["gflop_per_step"] = round(flops / 1e9, 3)
    res["gflops_per_s"] = round(flops / 1e9 / statistics.median(ts), 2)
    res["rss_after_import_mb"] = round(rss_import, 1)
    res["peak_rss_mb"] = round(rss_mb(), 1)
    return res


def load_pcm3_official():
    """pcm3_official.py (kept in bench/torch_ref, next to this file or at ../../bench/torch_ref
    from this folder) and the official code it reads from a git copy of JHang2020/PCM3."""
    for d in (HERE, os.path.join(HERE, "..", "..", "bench", "torch_ref")):
        if os.path.exists(os.path.join(d, "pcm3_official.py")):
            sys.path.insert(0, os.path.abspath(d))
            break
    try:
        import pcm3_official as P
    except ImportError:
        raise SystemExit("--pcm3-official needs bench/torch_ref/pcm3_official.py (the harness that "
                         "imports the official PCM3 code); it is not part of this folder")
    if not os.path.isdir(P.DEFAULT_GITDIR):
        raise SystemExit(f"--pcm3-official needs a git copy of {P.OFFICIAL_REPO}: set $PCM3_GITDIR "
                         f"(now {P.DEFAULT_GITDIR})")
    B, G, _ = P.load()
    return P, B, G


def run_pcm3(config: str, batch: int | None, warmup: int, iters: int, official: bool, gru: str) -> dict:
    """One PCM3 training step, timed; see the module docstring (mode pcm3_train)."""
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode
    import model as M

    rss_import = current_rss_mb()
    cfg = dict(M.PCM3_CONFIGS[config])
    rec = M.PCM3_RECIPE
    if batch:
        cfg["batch"] = batch
    n, t = cfg["batch"], cfg["frames"]
    if n < 3 or cfg["K"] % n:
        raise SystemExit(f"pcm3_train: the batch must be >= 3 and divide the queue size {cfg['K']}")
    if warmup < 1:
        raise SystemExit("pcm3_train: at least one warm-up step (it also counts the FLOPs)")
    # inputs made once, outside the timed region: three random views, one body-part mask
    g = torch.Generator().manual_seed(0)
    v1, v2, v3 = (torch.randn(n, 3, t, 25, 2, generator=g) for _ in range(3))
    mask = M.pcm3_body_part_mask(n, t, random.Random(0), chunk=rec["mask_chunk"], mask_ratio=rec["mask_ratio"])
    random.seed(0)
    if official:
        P, B, G = load_pcm3_official()
        net = P.build_moco(B, G, dict(hidden=cfg["hidden"], layers=cfg["layers"], dim=cfg["dim"], K=cfg["K"],
                                      prompt_half=cfg["prompt"] // 2, pred=cfg["pred"], tem=cfg["tem"],
                                      **{k: rec[k] for k in ("m", "T", "teacher_T", "student_T", "cmd_weight")}))
        torch.Tensor.cuda = lambda self, *a, **k: self  # the official forward calls .cuda() on a few tensors
        criterion = nn.CrossEntropyLoss()

        def forward_loss():
            # MoCo.forward_pcm3_wprompt, then the loss lines of pretrain_moco_mask.py (train())
            out1, out2, out3, out4, target, recons_data, loss_sim = net.forward_pcm3_wprompt(
                v1, v2, v3, local_rank=-1, mask=mask)
            mask_region = (1.0 - mask).permute(0, 4, 1, 3, 2)
            loss_rec = (((recons_data - v3) * mask_region) ** 2).sum() / mask_region.sum()
            loss_mp = criterion(out4, target) + criterion(out3, target)
            return criterion(out1, target) + criterion(out2, target) + loss_sim + loss_rec * 40 + loss_mp
        impl = "official"
    else:
        net = M.pcm3_model_from_config(cfg, gru_impl=gru, seed=0)

        def forward_loss():
            return net(v1, v2, v3, mask)["loss"]
        impl = "ours-" + gru
    net.train()
    opt = torch.optim.SGD(net.parameters(), rec["lr"], momentum=rec["momentum"], weight_decay=rec["weight_decay"])
    res = {"config": config, "mode": "pcm3_train", "attn": "none", "impl": impl, "threads": torch.get_num_threads(),
           "batch": n, "frames": t, "joints": 25, "bodies": 2,
           **{k: cfg[k] for k in ("hidden", "layers", "dim", "K", "prompt", "pred")}, "tem": list(cfg["tem"]),
           "torch": torch.__version__,
           "params": sum(p.numel() for p in net.parameters() if p.requires_grad),
           "params_total": sum(p.numel() for p in net.parameters()),
           "encoder_params": sum(p.numel() for p in net.encoder_q.parameters()),
           "inputs": "views and mask pre-made outside the timed step",
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}
    stages = {k: [] for k in ("forward", "backward", "optimizer")}

    def step(record=True):
        c0 = time.perf_counter()
        loss = forward_loss()  # includes the momentum update, the key pass and the enqueue
        c1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        c2 = time.perf_counter()
        opt.step()
        c3 = time.perf_counter()
        if record:
            for k, a, z in (("forward", c0, c1), ("backward", c1, c2), ("optimizer", c2, c3)):
                stages[k].append(z - a)
        return c3 - c0

    with FlopCounterMode(display=False) as fc:  # = the first warm-up step
        step(record=False)
    flops = fc.get_total_flops()
    for _ in range(warmup - 1):
        step(record=False)
    ts = [step() for _ in range(iters)]
    res.update(summarize(ts))
    res["stage_median_ms"] = {k: round(1e3 * statistics.median(v), 3) for k, v in stages.items()}
    res["seq_per_s"] = round(n / statistics.median(ts), 2)
    res["gflop_per_step"] = round(flops / 1e9, 3)
    res["gflops_per_s"] = round(flops / 1e9 / statistics.median(ts), 2)
    res["rss_after_import_mb"] = round(rss_import, 1)
    res["peak_rss_mb"] = round(rss_mb(), 1)
    return res


DEFAULT_ITERS = {"tiny": (5, 30), "small": (3, 15), "paper": (2, 8)}
# pcm3_train (warm-up steps, of which the first counts FLOPs; timed steps)
PCM3_ITERS = {"tiny": (2, 10), "small": (1, 5), "paper": (1, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--configs", default="tiny,small,paper")
    ap.add_argument("--modes", default="s2v_train,encode,mamp_train")
    ap.add_argument("--attn", default="math", choices=["math", "sdpa", "both"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paper-batch", type=int, default=None, help="override batch of 'paper'")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default per config)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default per config)")
    ap.add_argument("--pcm3-official", action="store_true",
                    help="pcm3_train: time the official PCM3 code (needs bench/torch_ref/pcm3_official.py and a\n"
                         "git copy of JHang2020/PCM3, $PCM3_GITDIR) instead of model.PCM3")
    ap.add_argument("--pcm3-gru", default="stepwise", choices=["stepwise", "layerwise"],
                    help="pcm3_train with model.PCM3: stepwise = the official per-frame GRU calls (default);\n"
                         "layerwise = same maths, one full-sequence call per layer and direction")
    ap.add_argument("--out", default=None, help="append JSON lines to this file")
    ap.add_argument("--single", nargs=3, metavar=("CONFIG", "MODE", "ATTN"), help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.single:
        config, mode, attn = args.single
        warm, iters = (PCM3_ITERS if mode == "pcm3_train" else DEFAULT_ITERS)[config]
        if args.iters:
            iters = args.iters
        if args.warmup is not None:
            warm = args.warmup
        print(json.dumps(run_single(config, mode, attn, args.batch, warm, iters, args.threads,
                                    args.pcm3_official, args.pcm3_gru)))
        return

    attns = ["math", "sdpa"] if args.attn == "both" else [args.attn]
    for config in args.configs.split(","):
        for mode in args.modes.split(","):
            for attn in (["none"] if mode == "pcm3_train" else attns):
                cmd = [sys.executable, os.path.abspath(__file__), "--single", config, mode, attn,
                       "--threads", str(args.threads)]
                if config == "paper" and args.paper_batch:
                    cmd += ["--batch", str(args.paper_batch)]
                if args.iters:
                    cmd += ["--iters", str(args.iters)]
                if args.warmup is not None:
                    cmd += ["--warmup", str(args.warmup)]
                if mode == "pcm3_train":
                    cmd += ["--pcm3-gru", args.pcm3_gru] + (["--pcm3-official"] if args.pcm3_official else [])
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.stderr.write(proc.stderr)
                    raise SystemExit(f"measurement {config} {mode} {attn} failed (exit {proc.returncode})")
                line = proc.stdout.strip().splitlines()[-1]
                print(line, flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(line + "\n")


if __name__ == "__main__":
    main()
