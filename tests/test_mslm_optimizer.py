"""The MSLM loop's AdamW: its learning-rate schedule, decoupled weight decay, resume and checks."""
import io

import pytest
import torch

from spacy_msnr.mslm.optimizer import TorchOptimizer, make_adamw


def _lrs(settings: TorchOptimizer, total_steps: int, n: int) -> list:
    """The learning rate of each of the first n steps (one optimizer step and one schedule step each)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer, schedule = settings.build([param], total_steps)
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_warmup_then_linear_decay_to_zero_at_the_last_step():
    # lr 1, 2 warm-up steps, 6 steps: (s+1)/2 while warming up, then (6-s)/(6-2)
    lrs = _lrs(make_adamw(learn_rate=1.0, warmup_steps=2), total_steps=6, n=7)
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_no_warmup_decays_from_the_first_step_and_decay_off_keeps_the_rate():
    assert _lrs(make_adamw(learn_rate=0.4), total_steps=4, n=4) == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert _lrs(make_adamw(learn_rate=0.4, decay=False), total_steps=4, n=4) == pytest.approx([0.4] * 4)
    # an open-ended run (total_steps 0) cannot decay towards a last step: warm-up, then constant
    assert _lrs(make_adamw(learn_rate=0.4, warmup_steps=2), total_steps=0, n=4) == pytest.approx([0.2, 0.4, 0.4, 0.4])


def test_weight_decay_is_decoupled_from_the_gradient():
    # AdamW with a zero gradient moves a weight only by lr * weight_decay * weight: 1 - 0.1 * 0.5 = 0.95
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer, _ = make_adamw(learn_rate=0.1, weight_decay=0.5).build([param], total_steps=10)
    param.grad = torch.zeros(2)
    optimizer.step()
    assert param.detach().tolist() == pytest.approx([0.95, -1.9])


def test_a_rebuilt_optimizer_resumes_the_schedule_where_it_stopped():
    settings = make_adamw(learn_rate=1.0, warmup_steps=2)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer, schedule = settings.build([param], total_steps=6)
    for _ in range(3):
        param.grad = torch.ones(3)
        optimizer.step()
        schedule.step()
    # saved and read back as the MSLM loop's checkpoint is (torch.load with weights_only=True)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu", weights_only=True)
    expected = optimizer.param_groups[0]["lr"]

    again = torch.nn.Parameter(param.detach().clone())
    optimizer2, schedule2 = settings.build([again], total_steps=6)
    optimizer2.load_state_dict(state["optimizer"])
    schedule2.load_state_dict(state["schedule"])
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(expected) == pytest.approx(0.75)
    assert torch.equal(optimizer2.state[again]["exp_avg"], optimizer.state[param]["exp_avg"])
    # the next step moves both copies the same way
    for p, opt, sched in ((param, optimizer, schedule), (again, optimizer2, schedule2)):
        p.grad = torch.full((3,), 0.5)
        opt.step()
        sched.step()
    assert torch.allclose(param, again)
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(0.5)


# learn_rate, beta1, weight_decay, max_grad_norm and a negative warmup_steps are checked through a
# whole MSLM config in test_mslm_train.py; these are the cases it does not reach.
@pytest.mark.parametrize("settings, message", [
    ({"beta2": float("nan")}, r"beta2 must be within \[0, 1\), got nan"),
    ({"eps": -1e-8}, r"eps must be a positive number"),
    ({"warmup_steps": 2.5}, r"warmup_steps must be an integer >= 0, got 2.5"),
    ({"warmup_steps": True}, r"warmup_steps must be an integer >= 0, got True"),
])
def test_bad_settings_name_the_setting_and_the_value(settings, message):
    with pytest.raises(ValueError, match=message):
        make_adamw(**settings)
