"""Search that learns and stops losers: the store-free core of a sweep's strategy.

A layer beside `spec/` (it imports spec and Optuna, nothing above): it only reads what the store
holds, handed to it as plain records (`config.TrialCurve`), and decides. Each decision rebuilds an
in-memory Optuna study from those records and asks Optuna's own sampler or pruner, so the lab's
queue runs the trials and the store stays the truth.

- `config`: SearchConfig and PrunerConfig (validated, to_dict/from_dict), TrialCurve, the states.
- `samplers`: the next N param dicts of a sweep (grid, random, TPE), seeded.
- `pruners`: `decide`, after one epoch of one trial: continue, prune or pause, with the reason.
- `promotion`: which paused trials rank in the top 1/eta of their rung and should resume.
- `replay`: a pruner run over a finished sweep's recorded curves: what it would have saved.
"""
