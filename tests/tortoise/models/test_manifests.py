"""Every registered model, built at full size, has exactly the official state_dict keys and shapes."""

import json

import pytest
import torch

from tortoise.models import build

MANIFEST_FOR = {
    "autoregressive": "autoregressive",
    "diffusion_decoder": "diffusion_decoder",
    "clvp2": "clvp2",
    "cvvp": "cvvp",
    "vocoder": "vocoder",
    "rlg_auto": "rlg_auto",
    "rlg_diffuser": "rlg_diffuser",
    "dvae": "dvae",
}


@pytest.mark.parametrize("name", sorted(MANIFEST_FOR))
def test_full_size_state_dict_matches_manifest(name, reference_dir):
    manifest = json.loads((reference_dir / "manifests" / f"{MANIFEST_FOR[name]}.json").read_text())
    with torch.device("meta"):
        model = build(name)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = manifest["state_dict"]
    assert sorted(set(want) - set(got)) == [], "keys missing from our model"
    assert sorted(set(got) - set(want)) == [], "keys our model has but the checkpoint lacks"
    assert {k: got[k] for k in want} == want
