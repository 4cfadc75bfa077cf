"""model.compile: the compiled training step is the eager one (same weights after real optimiser steps, R1
included), and compiling changes neither the modules nor the checkpoint's keys.

The CPU runs the aot_eager backend: Dynamo and AOTAutograd capture the same graphs as inductor would, without
the minutes of C++ code generation on a 2-core machine; the GPU path (inductor) is measured by bench/bench_gpu.py.
"""
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from gan.module import ReelGAN
from test_train_resume import BATCH, _FixedClips
from train_world import TINY_MODEL


def _module(compile_):
    torch.manual_seed(0)
    return ReelGAN(cond_dim=8, frames=8, height=32, width=32, r1_interval=2, ada_interval=1, ada_speed_images=64,
                   ada_p_init=0.5, compile=compile_, compile_backend="aot_eager", **TINY_MODEL)


def _fit(module, tmp_path):
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, precision="32-true",
                         default_root_dir=str(tmp_path))
    trainer.fit(module, DataLoader(_FixedClips(), batch_size=BATCH, shuffle=False))
    return trainer


def test_compiled_and_eager_training_steps_agree(tmp_path):
    eager, compiled = _module(False), _module(True)
    _fit(eager, tmp_path / "eager")
    _fit(compiled, tmp_path / "compiled")
    assert not getattr(eager, "_compiled", False)
    assert compiled._compiled                                          # the compiled graphs really ran
    assert hasattr(compiled.loss.image_features, "_torchdynamo_orig_callable")  # a torch.compile wrapper
    assert compiled.seen_batches == eager.seen_batches == 2           # 2 batches, R1 on batch 0 (eager)
    a, b = eager.state_dict(), compiled.state_dict()
    assert a.keys() == b.keys()                                      # same modules, same checkpoint layout
    # Compiled kernels sum in another order (forward differences ~1e-6). Adam's first steps with β1 = 0 are
    # nearly sign(g)·lr, so a gradient entry near 0 can flip and move by a whole lr: compare each tensor's mean
    # disagreement with how far the step moved it. A wrong compiled graph disagrees by about the move itself.
    initial, moved = _module(False).state_dict(), 0
    for key in a:
        if a[key].is_floating_point() and not torch.equal(a[key], initial[key]):
            moved += 1
            move = (a[key] - initial[key]).abs().mean()
            assert (b[key] - a[key]).abs().mean() <= 0.1 * move, key
    assert moved > 10                                                # the optimisers did change the weights
