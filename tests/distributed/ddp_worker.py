"""One process of a data-parallel test run, started by tests/test_distributed.py under
``torch.distributed.run`` (gloo, CPU): trains each case of a JSON file with the built-in
trainer and with a Selector loop under DDP, on the toy data set, and
rank 0 writes every run's per-epoch rows and final weights as JSON."""

import json
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import make_toy_dataset  # noqa: E402
from test_step_equivalence import selector_loop  # noqa: E402

from assist.api import make_config  # noqa: E402
from assist.engine.distributed import Group  # noqa: E402
from assist.engine.trainer import Trainer  # noqa: E402


def batchnorm_net(data) -> torch.nn.Module:
    """A small model with BatchNorm: running statistics that each rank updates from its share."""
    torch.manual_seed(0)
    pixels = int(data.train_images[0].numel())
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(pixels, 32), torch.nn.BatchNorm1d(32),
                               torch.nn.ReLU(), torch.nn.Linear(32, data.num_classes))


def weights(model: torch.nn.Module) -> dict:
    return {name: tensor.tolist() for name, tensor in model.state_dict().items()}


def main(cases_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    cases = json.loads(Path(cases_path).read_text())
    group = Group.from_environment("cpu")
    assert group.world_size > 1, "start this under torch.distributed.run with several processes"
    data = make_toy_dataset(**cases.get("data", {}))
    results = {"world_size": group.world_size}
    for name, values in cases.get("trainer", {}).items():
        trainer = Trainer(make_config(values), data, group=group)
        results[f"trainer:{name}"] = {"history": trainer.fit().history, "weights": weights(trainer.model)}
    for name, values in cases.get("batchnorm", {}).items():
        trainer = Trainer(make_config(values), data, model=batchnorm_net(data), group=group)
        results[f"batchnorm:{name}"] = {"history": trainer.fit().history, "weights": weights(trainer.model)}
    for name, values in cases.get("selector", {}).items():
        wrap = lambda model: torch.nn.parallel.DistributedDataParallel(model)  # noqa: E731
        model, stats = selector_loop(values, data, epochs=values["epochs"], wrap=wrap)
        results[f"selector:{name}"] = {"history": stats, "weights": weights(model)}
    if group.is_main:
        Path(out_path).write_text(json.dumps(results))
    group.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
