"""A dse network in other libraries' terms: a pycls config, timm's RegNetCfg arguments,
torchvision's RegNet BlockParams, or a saved torch file that dse loads back.

The configs are pure data (this module loads torch only inside the functions that build or
save modules). The key maps turn a dse state_dict into timm's or torchvision's names, so the
weights of a dse-trained model load into their modules unchanged (same shapes, same order).
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import asdict

import yaml

from dse.errors import DseError
from dse.space import blocks
from dse.space.spec import AnyNetSpec, Task, model_id, parse_spec

FORMATS = ("pycls", "timm", "torchvision", "torch")
_STEMS = {"imagenet": "simple_stem_in", "cifar": "res_stem_cifar"}  # pycls stem types


def _needs(fmt: str, task: Task, stem: str | None = "imagenet", channels: bool = True):
    if stem and task.stem != stem:
        raise DseError(f"--format {fmt} has only the ImageNet stem (3×3 conv, stride 2); this "
                       f"model has the {task.stem} stem; use --format pycls or torch")
    if channels and task.in_channels != 3:
        raise DseError(f"--format {fmt} builds networks for 3-channel inputs; this model takes "
                       f"{task.in_channels}; use --format torch")


def _block_for(fmt: str, spec: AnyNetSpec, have: tuple) -> blocks.Block:
    """The spec's block type, refused in one line where the format has no such block."""
    bt = blocks.get(spec.block)
    if spec.block not in have:
        raise DseError(f"--format {fmt} has no {bt.title} block (it has "
                       f"{', '.join(have)}); use --format torch")
    return bt


def pycls_config(spec: AnyNetSpec, task: Task, rp: dict | None = None) -> dict:
    """A pycls config (MODEL.TYPE regnet with REGNET.* when the RegNet parameters are known
    and every stage has stride 2, else anynet with ANYNET.* per stage). BLOCK_TYPE follows
    the block (res_bottleneck_block for x and r, res_basic_block, vanilla_block); SiLU is
    MODEL.ACTIVATION_FUN of pycls's later versions."""
    _needs("pycls", task, stem=None)
    bt = _block_for("pycls", spec, ("x", "r", "basic", "plain"))
    se = {"SE_ON": bool(spec.se_ratio), **({"SE_R": spec.se_ratio} if spec.se_ratio else {})}
    common = {"STEM_TYPE": _STEMS[task.stem], "STEM_W": spec.stem_w, "BLOCK_TYPE": bt.pycls}
    if rp and spec.first_stride == 2:
        g = rp["group_w"] if bt.groups else max(spec.gs)  # r: a group width ≥ every w_b
        body = {"REGNET": {**common, "DEPTH": rp["d"], "W0": rp["w0"], "WA": rp["wa"],
                           "WM": rp["wm"], "GROUP_W": g, "BOT_MUL": 1.0 / rp["b"], **se}}
    else:
        rp = None
        bottleneck = {"BOT_MULS": [1.0 / b for b in spec.bs], "GROUP_WS": list(spec.gs)}
        body = {"ANYNET": {**common, "DEPTHS": list(spec.ds), "WIDTHS": list(spec.ws),
                           "STRIDES": list(spec.strides),
                           **(bottleneck if bt.bottleneck else {}), **se}}
    model = {"TYPE": "regnet" if rp else "anynet", "NUM_CLASSES": task.num_classes}
    if spec.activation != blocks.DEFAULT_ACTIVATION:
        model["ACTIVATION_FUN"] = spec.activation
    return {"MODEL": model, **body,
            "TRAIN": {"IM_SIZE": task.resolution}, "TEST": {"IM_SIZE": task.resolution}}


def timm_config(spec: AnyNetSpec, task: Task, rp: dict | None = None) -> dict:
    """Arguments of timm.models.regnet.RegNetCfg plus the RegNet's own (in_chans,
    num_classes); timm describes a network by its RegNet parameters only."""
    if not rp:
        raise DseError("--format timm needs a RegNet (d, w0, wa, wm, g): timm's RegNetCfg "
                       "cannot hold per-stage widths; use --format pycls, torchvision or torch")
    _needs("timm", task, channels=False)
    bt = _block_for("timm", spec, ("x", "r"))
    if spec.first_stride != 2:
        raise DseError("--format timm gives every stage stride 2; this model's first stage has "
                       "stride 1; use --format pycls, torchvision or torch")
    cfg = {"depth": rp["d"], "w0": rp["w0"], "wa": rp["wa"], "wm": rp["wm"],
           "group_size": rp["group_w"] if bt.groups else max(spec.gs),
           "bottle_ratio": 1.0 / rp["b"], "se_ratio": spec.se_ratio, "stem_width": spec.stem_w}
    if spec.activation != blocks.DEFAULT_ACTIVATION:
        cfg["act_layer"] = spec.activation
    return {"cfg": cfg, "in_chans": task.in_channels, "num_classes": task.num_classes}


def torchvision_config(spec: AnyNetSpec, task: Task, rp: dict | None = None) -> dict:
    """Arguments of torchvision.models.regnet.BlockParams and RegNet, stage by stage (the
    widths dse computed, so torchvision's own rounding never runs)."""
    _needs("torchvision", task)
    _block_for("torchvision", spec, ("x", "r"))
    bp = {"depths": list(spec.ds), "widths": list(spec.ws), "group_widths": list(spec.gs),
          "bottleneck_multipliers": [1.0 / b for b in spec.bs], "strides": list(spec.strides),
          "se_ratio": spec.se_ratio or None}
    out = {"block_params": bp, "stem_width": spec.stem_w, "num_classes": task.num_classes}
    if spec.activation != blocks.DEFAULT_ACTIVATION:
        out["activation"] = spec.activation
    return out


def config_text(fmt: str, spec: AnyNetSpec, task: Task, rp: dict | None = None) -> str:
    """The config of a format as text: YAML for pycls, JSON for timm and torchvision."""
    if fmt == "pycls":
        return yaml.safe_dump(pycls_config(spec, task, rp), sort_keys=False)
    make = {"timm": timm_config, "torchvision": torchvision_config}.get(fmt)
    if make is None:
        raise DseError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return json.dumps(make(spec, task, rp), indent=2) + "\n"


# ---- building the exported networks (torch, timm) ----------------------------------------

def build_timm(config: dict):
    """timm's RegNet of a timm_config (needs timm: pip install 'dse[export]')."""
    try:
        from timm.models.regnet import RegNet, RegNetCfg
    except ImportError:
        raise DseError("timm is not installed; pip install timm (or 'dse[export]')") from None
    return RegNet(RegNetCfg(**config["cfg"]), in_chans=config["in_chans"],
                  num_classes=config["num_classes"])


def build_torchvision(config: dict):
    """torchvision's RegNet of a torchvision_config."""
    from torch import nn
    from torchvision.models.regnet import BlockParams, RegNet

    act = {"silu": nn.SiLU}.get(config.get("activation"))
    return RegNet(BlockParams(**config["block_params"]), num_classes=config["num_classes"],
                  stem_width=config["stem_width"], **({"activation": act} if act else {}))


_UNITS = {"a": "conv1", "b": "conv2", "c": "conv3"}


def timm_key(key: str) -> str:
    """The timm name of a dse state_dict key (s1.b1.f.a.conv.weight → s1.b1.conv1.conv.weight)."""
    key = re.sub(r"\.f\.([abc])\.", lambda m: f".{_UNITS[m.group(1)]}.", key)
    return key.replace(".f.se.", ".se.").replace(".proj.", ".downsample.")


def torchvision_key(key: str) -> str:
    """The torchvision name of a dse state_dict key (s2.b3.f.b.bn.weight →
    trunk_output.block2.block2-2.f.b.1.weight; stem.conv → stem.0; head.fc → fc)."""
    key = re.sub(r"^s(\d+)\.b(\d+)\.",
                 lambda m: f"trunk_output.block{m.group(1)}.block{m.group(1)}-"
                           f"{int(m.group(2)) - 1}.", key)
    key = key.replace("head.fc.", "fc.")
    return re.sub(r"\.conv\.", ".0.", re.sub(r"\.bn\.", ".1.", "." + key))[1:]


def rename(state_dict: dict, fmt: str) -> dict:
    """A dse state_dict under timm's or torchvision's keys."""
    key = {"timm": timm_key, "torchvision": torchvision_key}[fmt]
    return {key(k): v for k, v in state_dict.items()}


# ---- the torch format: a state_dict with the spec and task that rebuild it --------------

def save_torch(path, spec: AnyNetSpec, task: Task, state_dict: dict | None = None) -> None:
    """Write {"spec", "task", "model_id", "state_dict"} with torch.save; without a state_dict
    the network is built fresh (pycls initialization)."""
    import torch

    from dse.train.models import build

    sd = state_dict if state_dict is not None else build(spec, task).state_dict()
    torch.save({"spec": spec_json(spec), "task": asdict(task), "model_id": model_id(spec, task),
                "state_dict": sd}, path)


def load_torch(path):
    """(module, spec, task) of a file written by save_torch, weights loaded."""
    import torch

    from dse.train.models import build

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        spec, task = parse_spec(obj["spec"])[0], Task(**obj["task"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError,
            pickle.UnpicklingError) as e:
        raise DseError(f"{path} is not a model saved by `dse export --format torch` ({e})") \
            from None
    model = build(spec, task)
    model.load_state_dict(obj["state_dict"])
    return model, spec, task


def spec_json(spec: AnyNetSpec) -> dict:
    """The anynet JSON form of a spec (spec.parse_spec reads it back to the same spec): b
    and g only for blocks that have them, the block keys only when not the X default."""
    bt = blocks.get(spec.block)
    out = {"kind": "anynet", "ds": list(spec.ds), "ws": list(spec.ws)}
    out.update({"bs": list(spec.bs)} if bt.bottleneck else {})
    out.update({"gs": list(spec.gs)} if bt.groups else {})
    out.update(se_ratio=spec.se_ratio, stem_w=spec.stem_w)
    if not spec.is_default_block:
        out.update(block=spec.block, activation=spec.activation,
                   first_stride=spec.first_stride)
    return out
