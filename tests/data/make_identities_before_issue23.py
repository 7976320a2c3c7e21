"""Writes the identities the code before issue 23 gave a set of runs (run it with that code)."""
import json, sys
from assist.api import make_config, config_hash, run_name
from assist.experiments.spec import SweepSpec
from assist.experiments.plan import expand

RUNS = [
    {}, {"strategy": "epochwise"}, {"batch_filtering": True, "accumulation_batch_size": 128, "batch_size": 32},
    {"strategy": "batchwise", "filter": "soft", "soft_margin": 0.2, "selector": "top_k", "select_k": 8},
    {"strategy": "batchwise", "filter": "none", "selector": "q_split", "select_k": 0.25, "select_p_end": 1.0,
     "select_quota": "literal"},
    {"strategy": "batchwise", "accumulation_batch_size": "auto", "accumulation_batch_size_max": 256, "overflow": "carry"},
    {"strategy": "batchwise", "batch_accumulation": False, "selector": "top_q", "select_q": 0.3},
    {"strategy": "epoch_batchwise", "epoch_selector": "top_k", "epoch_select_k": 0.5, "starved_epoch": "partial",
     "epoch_filter_augmentation": "replay"},
    {"strategy": "epochwise", "selector": "top_k", "select_k": 10, "fill_random": False, "scoring_mode": "train"},
    {"strategy": "infobatch", "strategy_options": {"ratio": 0.3}},
    {"strategy": "infobatch", "strategy_options": {"ratio": 0.3, "delta": 1}},
    {"strategy": "random_subset", "accumulation_batch_size": 128, "strategy_options": {"fraction": 0.25}},
    {"strategy": "selective_backprop", "strategy_options": {"beta": 2}},
    {"strategy": "rho_loss", "scoring_mode": "train", "strategy_options": {"il_epochs": 2}},
    {"strategy": "divbs"}, {"strategy": "grad_norm", "strategy_options": {"fraction": 0.2}},
    {"strategy": "importance_sampling"}, {"strategy": "ordered_sgd", "strategy_options": {"s": 16}},
    {"strategy": "max_loss"}, {"strategy": "grad_norm_is"},
    {"strategy": "batchwise", "score_every": 2, "precision": "bf16", "lr_scheduler": "cosine", "epochs": 3},
]
out = {"runs": []}
for values in RUNS:
    config = make_config({"dataset": "digits", "model": "fcnet16", "epochs": 2, **values})
    out["runs"].append({"given": values, "stored": config.model_dump(mode="json"), "hash": config_hash(config),
                        "name": run_name(config)})
spec = SweepSpec.model_validate({
    "name": "ids", "base": {"dataset": "digits", "model": "fcnet16", "epochs": 2},
    "grid": {"learning_rate": [0.05, 0.1]},
    "experiments": {"acc": {"strategy": "batchwise", "accumulation_batch_size": [64, 128], "select_k": [4, 8], "filter": ["hard", "soft"],
                            "selector": "top_k"},
                    "ib": {"strategy": "infobatch", "strategy_options": {"ratio": 0.3}}},
    "seeds": [0, 1]})
out["sweep"] = {"spec": spec.model_dump(mode="json"), "runs": [[r.run_id, r.name] for r in expand(spec)]}
json.dump(out, open(sys.argv[1], "w"), indent=1, sort_keys=True)
