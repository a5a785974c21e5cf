"""The value table (runs/validation.py): each rule's example is a value it accepts, the shipped configs pass it
untouched, and a refusal names the key, the value, why and a value that works."""
from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from errors import ConfigError
from runs.configs import CFG_DIR, compose
from runs.validation import RULES, check_config, check_values

PARSER = OverridesParser.create()


@pytest.mark.parametrize("rule", RULES, ids=[rule.key for rule in RULES])
def test_each_rules_example_is_a_value_it_accepts(rule):
    if "<run>" in rule.example or rule.key == "paths.output_dir":
        pytest.skip("a path that depends on the machine")
    value = PARSER.parse_override(f"x={rule.example}").value()  # as the command line would read it
    assert rule.kind.accepts(value), (rule.key, rule.example)


SHIPPED = [("train", []), ("distill", []), ("distill", ["teacher=ensemble"]), ("distill", ["teacher=crossfit"]),
           ("distill", ["teacher=cached"]), ("distill", ["augment=mixup"]), ("train", ["scheduler=multistep"]),
           ("train", ["optimizer=adam"]), ("train", ["optimizer=adamw"]), ("train", ["trainer=cpu"]),
           ("tune", ["search=kd_temperature"])]
SHIPPED += [("train", [f"data={p.stem}"]) for p in sorted((CFG_DIR / "data").glob("*.yaml"))]
# (every method and reproduction passes too: tests/test_experiments.py runs each cfg/experiment cell)


@pytest.mark.parametrize("name,overrides", SHIPPED, ids=[" ".join([n, *o]) for n, o in SHIPPED])
def test_shipped_configs_pass_unchanged(name, overrides):
    cfg = compose(name, overrides)
    before = cfg.copy()
    (check_values if name == "tune" else check_config)(cfg)
    assert cfg == before


@pytest.mark.parametrize("override,message", [
    ("optimizer.lr=0", "optimizer.lr=0: must be a number > 0 (the learning rate); e.g. optimizer.lr=0.05"),
    ("seed=1.5", "seed=1.5: must be an integer in [0, 4294967295]; e.g. seed=0"),
    ("data.eval_batch_size=0",
     "data.eval_batch_size=0: must be an integer >= 1, or null; e.g. data.eval_batch_size=256"),
    ("teacher.recipe.trainer.max_epochs=-5", "teacher.recipe.trainer.max_epochs=-5: must be an integer >= 1 (the "
                                             "number of epochs); e.g. teacher.recipe.trainer.max_epochs=30"),
    ("kd.terms.kd.temperature=nan",
     "kd.terms.kd.temperature=nan: must be a number > 0; e.g. kd.terms.kd.temperature=4"),
    ("teacher.cache=true", "teacher.cache=true: must be one of auto, false; e.g. teacher.cache=auto"),
])
def test_a_refusal_names_key_value_why_and_a_value_that_works(override, message):
    with pytest.raises(ConfigError) as refusal:
        check_values(compose("distill", [override]))
    assert str(refusal.value) == message


def test_the_key_the_user_typed_is_named_before_the_keys_that_copy_it():
    with pytest.raises(ConfigError, match=r"^seed='x'"):  # not data.seed, which reads ${seed}
        check_values(compose("train", ["seed=x"]))


def test_a_term_left_without_its_class_by_another_methods_config_is_named():
    # e.g. an experiment written for kd=kd that sets kd.terms.kd's weight and temperature, run with kd=ab
    with pytest.raises(ConfigError, match=r"^kd.terms.kd names no term class \(_target_\), only \['temperature', "
                                          r"'weight'\]: .*~kd.terms.kd"):
        check_config(compose("distill", ["kd=ab", "+kd.terms.kd.weight=0.9", "+kd.terms.kd.temperature=4"]))
