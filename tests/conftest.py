"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# A small SynthReID for tests of every area: 24 train + 24 test identities, 6 cameras in 3 scenes.
SMALL_SYNTH_KNOBS = dict(
    num_train_ids=24,
    num_test_ids=24,
    num_cameras=6,
    num_scenes=3,
    image_size=(128, 64),
    cameras_per_id=(2, 3),
    images_per_camera=(1, 3),
    num_distractors=12,
    num_junk=4,
)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a small generated SynthReID (Market-1501 layout + meta.json), made once per session."""
    from reidlab.data import synth

    return synth.generate(tmp_path_factory.mktemp("synth") / "synthreid", seed=0, **SMALL_SYNTH_KNOBS)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A SLURM cluster that answers (``scripts/slurm-local start``): tests that need one skip without it, except
    where ``REIDLAB_REQUIRE_SLURM=1`` (CI), which makes a missing cluster a failure."""
    import os
    import shutil
    import subprocess

    up = shutil.which("sbatch") is not None and subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                                                                 check=False).stdout.count("is UP") > 0
    if not up:
        message = "no SLURM cluster answers; start one with scripts/slurm-local start"
        if os.environ.get("REIDLAB_REQUIRE_SLURM") == "1":
            pytest.fail(message + " (REIDLAB_REQUIRE_SLURM=1)")
        pytest.skip(message)
