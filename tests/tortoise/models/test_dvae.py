"""DiscreteVAE against the official DLAS golden outputs, plus its configuration and codebook rules."""

import inspect
import json

import pytest
import torch

from tortoise.errors import InvalidInputError
from tortoise.mel import compute_ar_mel
from tortoise.models import build, load
from tortoise.models.dvae import DiscreteVAE, Quantize


@pytest.fixture(scope="module")
def gold(golden):
    return golden("dvae.pt")


@pytest.fixture(scope="module")
def model(gold):
    return load("dvae", gold["state_dict"], **gold["constructor_args"])


def test_defaults_are_the_official_dvae_pth_configuration(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "dvae.json").read_text())
    defaults = {k: p.default for k, p in inspect.signature(DiscreteVAE).parameters.items()}
    for name, value in {**manifest["constructor_args"], **manifest["constructor_defaults_in_effect"]}.items():
        if name in defaults:
            assert defaults[name] == value, name
    assert set(manifest["constructor_args"]) <= set(defaults)


def test_full_size_parameter_count(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "dvae.json").read_text())
    with torch.device("meta"):
        model = build("dvae")
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["total_state_dict_elements"]
    assert model.num_codes(1000) == 250  # a 255995-sample training wav


@torch.no_grad()
def test_encoder_output_matches_golden(model, gold):
    torch.testing.assert_close(model.encode(gold["mel"]), gold["encoder_out"],
                               atol=gold["tolerances"]["encoder_out_abs"], rtol=0)


def test_codes_match_golden_exactly(model, gold):
    codes = model.get_codebook_indices(gold["mel"])
    assert codes.dtype == torch.int64
    assert torch.equal(codes, gold["codes"])


@torch.no_grad()
def test_decode_matches_golden(model, gold):
    recon, pre_final = model.decode(gold["codes"])
    atol = gold["tolerances"]["recon_abs"]
    torch.testing.assert_close(recon, gold["recon"], atol=atol, rtol=0)
    torch.testing.assert_close(pre_final, gold["recon_pre_final"], atol=atol, rtol=0)


def test_codes_from_the_waveform_through_our_front_end(model, gold):
    front = gold["frontend"]
    atol = gold["tolerances"]["mel_vs_torchaudio_abs"]
    torch.testing.assert_close(compute_ar_mel(front["wav"]), front["log_mel"], atol=atol, rtol=0)
    mel = compute_ar_mel(front["wav"], front["mel_norms"])
    torch.testing.assert_close(mel, gold["mel"], atol=atol, rtol=0)
    assert torch.equal(model.get_codebook_indices(mel), gold["codes"])


def test_batch_items_are_encoded_independently(model, gold):
    whole = model.get_codebook_indices(gold["mel"])
    single = torch.cat([model.get_codebook_indices(gold["mel"][i : i + 1]) for i in range(2)])
    assert torch.equal(whole, single)


@torch.no_grad()
def test_eval_forward_decodes_the_codes(model, gold):
    mel = gold["mel"][..., :36]  # forward compares output and input: frames must be a multiple of 4
    loss, commitment, out = model(mel)
    expected, _ = model.decode(model.get_codebook_indices(mel))
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    torch.testing.assert_close(loss, (out - mel) ** 2)
    assert commitment.dim() == 0 and commitment > 0


def test_train_mode_leaves_codebook_buffers_and_mode_alone(gold):
    model = load("dvae", gold["state_dict"], **gold["constructor_args"]).train()
    before = {k: v.clone() for k, v in model.codebook.state_dict().items()}
    assert torch.equal(model.get_codebook_indices(gold["mel"]), gold["codes"])
    _, _, out = model(gold["mel"][..., :36])
    out.sum().backward()  # the straight-through path reaches the encoder
    assert model.training
    assert model.encoder[0][0].weight.grad is not None
    for name, value in model.codebook.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_get_codebook_indices_needs_no_grad_and_accepts_other_dtypes(model, gold):
    codes = model.get_codebook_indices(gold["mel"].double().requires_grad_())
    assert torch.equal(codes, gold["codes"])


def test_nearest_code_ties_pick_the_lowest_index():
    quantize = Quantize(dim=2, n_embed=4)
    quantize.embed.copy_(torch.tensor([[5.0, 1.0, 1.0, -1.0], [5.0, 0.0, 0.0, 0.0]]))
    codes = quantize.nearest(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))
    assert codes.tolist() == [[1, 1]]  # columns 1 and 2 are equal; 1 and 3 tie for the origin


def test_wrong_mel_shape_is_a_clear_error(model):
    with pytest.raises(InvalidInputError, match="80"):
        model.get_codebook_indices(torch.zeros(1, 100, 40))
    with pytest.raises(InvalidInputError):
        model.get_codebook_indices(torch.zeros(80, 40))


@pytest.mark.parametrize("kwargs", [{"positional_dims": 2}, {"num_layers": 0}, {"activation": "gelu"}])
def test_unsupported_configurations_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DiscreteVAE(**{"hidden_dim": 8, "codebook_dim": 4, "num_tokens": 8, **kwargs})


@torch.no_grad()
def test_other_official_options_build_and_keep_shapes():
    torch.manual_seed(0)
    model = DiscreteVAE(codebook_dim=8, hidden_dim=16, num_tokens=32, num_resnet_blocks=0,
                        use_transposed_convs=True, encoder_norm=True, activation="silu",
                        kernel_size=4, normalization=([0.5] * 80, [2.0] * 80)).eval()
    mel = torch.randn(2, 80, 32)
    codes = model.get_codebook_indices(mel)
    assert codes.shape == (2, model.num_codes(32)) == (2, 8)
    recon, pre_final = model.decode(codes)
    assert recon.shape == (2, 80, 32) and pre_final.shape == (2, 16, 32)
