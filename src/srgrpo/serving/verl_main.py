"""`python -m srgrpo.serving.verl_main <verl overrides>`: verl 0.9's own `verl.trainer.main_ppo`, with
the same Hydra config and overrides, after `check_verl_config` has refused a config that would not
send its rewards to srgrpo serve (the old top-level `custom_reward_function.*` keys, a missing URL, a
reward manager verl no longer has). verl's entry point cannot be told to refuse those itself: this
is the check a config hits before training starts. Needs verl installed; nothing here imports torch
before verl does."""

from __future__ import annotations

import os
import sys

from srgrpo.serving.client import check_verl_config


def verl_config_dir() -> str:
    """verl's trainer config folder (where `main_ppo` finds ppo_trainer.yaml)."""
    import verl.trainer.main_ppo as main_ppo

    return os.path.join(os.path.dirname(main_ppo.__file__), "config")


def compose(overrides: list[str], config_name: str = "ppo_trainer"):
    """verl's config with these command-line overrides, composed as `main_ppo` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def main(argv: list[str] | None = None) -> None:
    import hydra  # verl and its Hydra are optional, installed only where verl runs
    from verl.trainer import main_ppo

    @hydra.main(config_path=verl_config_dir(), config_name="ppo_trainer", version_base=None)
    def run(config):
        check_verl_config(config)
        main_ppo.main.__wrapped__(config)  # verl's main body, on the config Hydra composed

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    run()


if __name__ == "__main__":
    main()
