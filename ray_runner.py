"""Hyperparameter sweeps on Ray Tune: not built yet (see the sweeps issue)."""
import sys

if __name__ == "__main__":
    sys.exit("ray_runner.py is not implemented yet: sweeps on Ray Tune arrive with the sweeps issue. "
             "For now, sweep with Hydra's multirun: python distill_train.py -m seed=0,1,2")
