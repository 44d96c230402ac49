"""Checkpoints written in the background: the work runs one at a time, its failure reaches the
loop's thread, and what is written is the state at the moment it was copied."""

from __future__ import annotations

import threading

import pytest
import torch

from worker.behind import Behind
from worker.callbacks import LeaseLost
from worker.checkpoints import copied


def test_a_failure_is_raised_in_the_callers_thread_once() -> None:
    behind = Behind("test")
    behind.start(lambda: (_ for _ in ()).throw(LeaseLost("attempt 1 no longer owns job")))
    with pytest.raises(LeaseLost, match="no longer owns"):
        behind.wait()
    behind.check()  # raised once, then cleared
    behind.wait()


def test_the_next_work_waits_for_the_previous_one() -> None:
    behind, order = Behind("test"), []
    release = threading.Event()

    def first() -> None:
        release.wait(5)
        order.append("first")

    behind.start(first)
    assert behind.busy()
    threading.Timer(0.05, release.set).start()
    behind.start(lambda: order.append("second"))  # returns once `first` has ended
    behind.wait()
    assert order == ["first", "second"]


def test_a_copy_does_not_follow_the_training_that_goes_on() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "python": (3, (1, 2), None), "numpy": ["MT19937", torch.arange(3)]}
    snapshot = copied(payload)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"].clone()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # in place, as the loop goes on while the copy is written
    for key, value in before.items():
        assert torch.equal(snapshot["model"][key], value)
    assert torch.equal(snapshot["optimizer"]["state"][0]["exp_avg"], exp_avg)
    assert not torch.equal(model.weight, before["weight"])
    assert snapshot["python"] == (3, (1, 2), None) and isinstance(snapshot["python"], tuple)
    assert snapshot["numpy"][0] == "MT19937"
