"""How forwards run on the device: precision, memory format and compilation.

One place for the three speed settings, shared by the training step and the scoring forward
(engine/step.py), so both see the same model the same way:

- ``precision``: ``fp32`` (default); ``bf16``, which runs the forward under
  ``torch.autocast`` with bfloat16 (CPU and GPU); or ``fp16``, autocast with float16 plus a
  gradient scaler (GPU only). Losses are always taken in float32 from the forward's logits.
  ``score_precision`` gives the scoring forward its own precision (default: the training
  one), so a cheap bf16 scoring pass can feed an fp32 training step.
- ``channels_last``: the model's weights and its 4-D inputs in NHWC memory format, for models
  with convolutions (the others are left as they are).
- ``compile``: ``torch.compile`` of the model, used by the training and the scoring
  forwards, with ``dynamic=True``, so raw batches and trained batches of varying size
  (unstable batches, presampling) do not recompile for every new size.

Evaluation (the per-epoch metrics) always runs the plain model in fp32, so the reported
accuracies of runs with different settings compare directly. See docs/speed.md.
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


def compiler_problem(device: str) -> Optional[str]:
    """Why ``torch.compile`` cannot run here, or None. On CPU, inductor needs a C++ compiler."""
    if not hasattr(torch, "compile"):
        return "this PyTorch has no torch.compile"
    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (g++ or clang++) on PATH"
    return None


@dataclass
class Runtime:
    device: torch.device
    precision: str = "fp32"
    score_precision: Optional[str] = None
    channels_last: bool = False
    compiled: Optional[Callable[..., torch.Tensor]] = None
    # data-parallel runs (engine/distributed.py): the DDP wrapper training forwards go
    # through (so gradients are averaged), compiled too under ``compile``; scoring forwards
    # use the plain (or compiled) model, which needs no collective
    trainer: Optional[Callable[..., torch.Tensor]] = None

    @classmethod
    def build(cls, config: Any, model: torch.nn.Module, device: torch.device,
              wrap: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None) -> "Runtime":
        channels_last = bool(config.channels_last) and has_convolutions(model)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model, dynamic=True) if config.compile else None
        trainer = None
        if wrap is not None:
            wrapped = wrap(model)
            trainer = torch.compile(wrapped, dynamic=True) if config.compile else wrapped
        return cls(device, config.precision, config.score_precision, channels_last, compiled, trainer)

    def autocast(self, *, scoring: bool = False) -> ContextManager:
        precision = (self.score_precision or self.precision) if scoring else self.precision
        if precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[precision])

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return (self.compiled if self.compiled is not None else model)(self.inputs(x))

    def train_forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The training step's forward: through the DDP wrapper in a data-parallel run."""
        if self.trainer is None:
            return self.forward(model, x)
        return self.trainer(self.inputs(x))

    def scaler(self) -> "torch.amp.GradScaler":
        """float16 training needs its loss scaled; bfloat16 and float32 do not (the scaler is
        then disabled: its calls pass the loss and the step through unchanged)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

