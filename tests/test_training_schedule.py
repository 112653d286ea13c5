"""An epoch is exactly --steps-per-epoch steps, the schedule ends where it says, and an
interrupted run resumes at the very step it stopped (sampler state included)."""

from __future__ import annotations

import pytest

import reid_search.training.loop as loop_module
from reid_search.data.synthetic import generate_dataset
from reid_search.embedding.tower import TowerConfig
from reid_search.training import TrainConfig


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("sched"),
        n_people=10,
        n_cameras=2,
        frames_per_tracklet=2,
        seed=5,
        split="bbox_train",
    )


def config_for(root, out, epochs=3, steps=7) -> TrainConfig:
    return TrainConfig(
        data=[str(root)], out=str(out), tower=TowerConfig("mini", 32, 16, 8), p=4, k=2, epochs=epochs,
        steps_per_epoch=steps, lr=1e-3, warmup_epochs=1, val_fraction=0.2,
    )  # fmt: skip


def run_steps(config, resume=False, stop_after=None) -> tuple[loop_module.TrainResult, list]:
    """Train (or resume); with ``stop_after`` a Ctrl-C arrives during that many-th step."""
    captured = []
    real_init = loop_module.Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        captured.append(self)
        if stop_after is not None:
            step_fn, calls = self._train_step, []

            def interrupting(*a):
                calls.append(1)
                if len(calls) == stop_after:
                    raise KeyboardInterrupt
                return step_fn(*a)

            self._train_step = interrupting

    loop_module.Trainer.__init__ = init
    try:
        result = loop_module.train(config, resume=resume, log=lambda *_: None)
    finally:
        loop_module.Trainer.__init__ = real_init
    return result, captured[0].step_log


def test_an_epoch_is_exactly_steps_per_epoch_and_the_schedule_reaches_its_end(small_root, tmp_path):
    # 16 training images at P x K = 8: an epoch of the sampler is 2 batches; we ask for 7
    result, log = run_steps(config_for(small_root, tmp_path / "run"))
    assert [s for s, _, _ in log] == list(range(21))
    assert log[-1][1] == pytest.approx(1e-5)  # base / 100 at the last step
    assert result.epochs_done == 3


def test_ctrl_c_mid_epoch_resumes_at_that_step_with_the_same_batches(small_root, tmp_path):
    _, whole = run_steps(config_for(small_root, tmp_path / "whole"))
    first, before = run_steps(config_for(small_root, tmp_path / "cut"), stop_after=11)  # inside epoch 2
    assert first.interrupted and [s for s, _, _ in before] == list(range(10))
    _, after = run_steps(config_for(small_root, tmp_path / "cut"), resume=True)
    assert before + after == whole  # same steps, learning rates and batches, none repeated
