"""RWKV-7 checkpoints: BlinkDL .pth and flash-linear-attention folders, save_pretrained, the Hub cache,
rwkv_app.from_pretrained's family choice, and refused variants."""
import json

import pytest
import torch
from safetensors.torch import save_file

import rwkv_app
from rwkv_app import CheckpointError, ConfigError, Rwkv7Config, Rwkv7ForCausalLM, Rwkv7Model, RwkvForCausalLM
from rwkv_app.models.rwkv4.blinkdl import convert_hf_to_blinkdl
from rwkv_app.models.rwkv7.blinkdl import fla_to_blinkdl

from .conftest import randomize, tiny_config
from .hub_fixtures import populate_hub_cache
from .rwkv7_helpers import save_pth, tiny_model7

IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
FLA_EXTRAS = {  # what fla's RWKV7Config writes beside the sizes; unused here, kept on save
    "architectures": ["RWKV7ForCausalLM"], "attn": None, "attn_mode": "chunk", "fuse_cross_entropy": True,
    "fuse_norm": False, "hidden_act": "sqrelu", "hidden_ratio": 3.5, "initializer_range": 0.006,
    "max_position_embeddings": 2048, "norm_bias": True, "norm_first": True, "torch_dtype": "float32",
    "transformers_version": "4.48.0", "use_l2warp": False,
}


@torch.no_grad()
def logits_of(model) -> torch.Tensor:
    return model(IDS).logits


@pytest.fixture(scope="module")
def source():
    return tiny_model7(seed=5)


def write_fla_folder(model: Rwkv7ForCausalLM, directory, **config_changes):
    """A folder as fla's convert_from_rwkv7 leaves it: fla's config.json (num_heads given) and safetensors."""
    directory.mkdir(parents=True, exist_ok=True)
    c = model.config
    config = dict(FLA_EXTRAS, model_type="rwkv7", vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                  num_hidden_layers=c.num_hidden_layers, head_dim=None, num_heads=c.num_heads,
                  intermediate_size=c.intermediate_size, decay_low_rank_dim=c.decay_low_rank_dim,
                  a_low_rank_dim=c.a_low_rank_dim, v_low_rank_dim=c.v_low_rank_dim,
                  gate_low_rank_dim=c.gate_low_rank_dim, norm_eps=1e-5, value_dim=[c.hidden_size] * 3,
                  bos_token_id=0, eos_token_id=0, tie_word_embeddings=False, use_cache=True)
    config.update(config_changes)
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors")
    return directory


def test_fla_folder_and_blinkdl_pth_give_the_same_logits(source, tmp_path):
    expected = logits_of(source)
    from_pth = Rwkv7ForCausalLM.from_pretrained(save_pth(source, tmp_path / "x070.pth"))
    from_fla = Rwkv7ForCausalLM.from_pretrained(write_fla_folder(source, tmp_path / "fla"))
    assert from_fla.config.head_dim == 64 and from_fla.config.extra["attn_mode"] == "chunk"
    assert torch.equal(logits_of(from_pth), expected)
    assert torch.equal(logits_of(from_fla), expected)


def test_save_pretrained_round_trips_and_writes_an_fla_config(source, tmp_path):
    loaded = Rwkv7ForCausalLM.from_pretrained(write_fla_folder(source, tmp_path / "fla"))
    loaded.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "rwkv7" and config["value_dim"] == [128] * 3 and config["fuse_norm"] is False
    again = Rwkv7ForCausalLM.from_pretrained(tmp_path / "saved")
    assert again.config == loaded.config
    assert torch.equal(logits_of(again), logits_of(source))
    base = Rwkv7Model.from_pretrained(tmp_path / "saved")
    base.save_pretrained(tmp_path / "base")  # no `model.` prefix and no head, as fla's bare model writes
    assert torch.equal(Rwkv7Model.from_pretrained(tmp_path / "base")(IDS).last_hidden_state,
                       base(IDS).last_hidden_state)


def test_dtype_at_load(source, tmp_path):
    model = Rwkv7ForCausalLM.from_pretrained(save_pth(source, tmp_path / "x070.pth"), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_old_fla_folders_with_x_x_load(source, tmp_path):
    """fla's first RWKV7Attention stored the six mixes as one `attn.x_x` (6, C)."""
    state_dict = dict(source.state_dict())
    for layer in range(3):
        prefix = f"model.layers.{layer}.attn."
        state_dict[prefix + "x_x"] = torch.cat([state_dict.pop(prefix + m) for m in
                                                ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")]).reshape(6, -1)
    directory = write_fla_folder(source, tmp_path / "old")
    save_file({k: v.contiguous() for k, v in state_dict.items()}, directory / "model.safetensors")
    assert torch.equal(logits_of(Rwkv7ForCausalLM.from_pretrained(directory)), logits_of(source))


def test_hub_repo_loads_from_the_offline_cache(source, tmp_path):
    folder = write_fla_folder(source, tmp_path / "fla")
    cache = tmp_path / "cache"
    populate_hub_cache(cache, "tiny-org/rwkv7-tiny", {n: folder / n for n in ("config.json", "model.safetensors")})
    model = rwkv_app.from_pretrained("tiny-org/rwkv7-tiny", cache_dir=cache, local_files_only=True)
    assert isinstance(model, Rwkv7ForCausalLM)
    assert torch.equal(logits_of(model), logits_of(source))


def test_from_pretrained_picks_the_family(source, tmp_path):
    rwkv4 = randomize(RwkvForCausalLM(tiny_config())).eval()
    rwkv4.save_pretrained(tmp_path / "rwkv4")
    torch.save(convert_hf_to_blinkdl(dict(rwkv4.state_dict())), tmp_path / "rwkv4.pth")
    cases = {tmp_path / "rwkv4": RwkvForCausalLM, tmp_path / "rwkv4.pth": RwkvForCausalLM,
             write_fla_folder(source, tmp_path / "fla"): Rwkv7ForCausalLM,
             save_pth(source, tmp_path / "x070.pth"): Rwkv7ForCausalLM}
    assert torch.equal(logits_of(Rwkv7ForCausalLM.from_pretrained(tmp_path / "fla")), logits_of(source))
    for path, cls in cases.items():
        model = rwkv_app.from_pretrained(path)
        assert type(model) is cls, path
        assert torch.equal(logits_of(model), logits_of(cls.from_pretrained(path)))


def with_extra(source, **tensors) -> dict:
    state_dict = fla_to_blinkdl({k: v.clone() for k, v in source.state_dict().items()})
    state_dict.update(tensors)
    return state_dict


@pytest.mark.parametrize("extra, named", [
    ({"blocks.0.ffn.s_emb.weight": torch.zeros(300, 1024), "blocks.0.ffn.s1": torch.zeros(128, 32)}, "RWKV-7a"),
    ({"blocks.0.ffn.s_emb.weight": torch.zeros(300, 1024), "blocks.0.qkv.qq.weight": torch.zeros(256, 128)},
     "RWKV-7b"),
])
def test_deepembed_and_dea_variants_are_refused_by_name(source, tmp_path, extra, named):
    path = tmp_path / "variant.pth"
    torch.save(with_extra(source, **extra), path)
    for load in (Rwkv7ForCausalLM.from_pretrained, rwkv_app.from_pretrained):
        with pytest.raises(CheckpointError, match=named):
            load(path)


@pytest.mark.parametrize("keys, named", [
    (("blocks.0.att.time_maa_x", "blocks.0.att.time_decay", "blocks.0.att.ln_x.weight"), "RWKV-6"),
    (("blocks.0.att.time_faaaa", "blocks.0.att.time_decay", "blocks.0.att.ln_x.weight"), "RWKV-5"),
])
def test_rwkv5_and_rwkv6_files_are_refused_by_name(tmp_path, keys, named):
    path = tmp_path / "old.pth"
    torch.save({"emb.weight": torch.zeros(10, 4), **{k: torch.zeros(4) for k in keys}}, path)
    for load in (Rwkv7ForCausalLM.from_pretrained, RwkvForCausalLM.from_pretrained, rwkv_app.from_pretrained):
        with pytest.raises(CheckpointError, match=named):
            load(path)


def test_a_file_of_the_other_family_is_named(source, tmp_path):
    rwkv4 = randomize(RwkvForCausalLM(tiny_config()))
    torch.save(convert_hf_to_blinkdl(dict(rwkv4.state_dict())), tmp_path / "rwkv4.pth")
    with pytest.raises(CheckpointError, match="RWKV-4"):
        Rwkv7ForCausalLM.from_pretrained(tmp_path / "rwkv4.pth")
    with pytest.raises(CheckpointError, match="RWKV-7"):
        RwkvForCausalLM.from_pretrained(save_pth(source, tmp_path / "x070.pth"))


@pytest.mark.parametrize("change, named", [
    ({"attn": {"layers": [1], "num_heads": 2}}, "attn"),
    ({"value_dim": [128, 256, 128]}, "value_dim"),
    ({"hidden_act": "swish"}, "hidden_act"),
    ({"model_type": "mamba"}, "model_type"),
])
def test_fla_options_not_implemented_are_refused(source, tmp_path, change, named):
    with pytest.raises((ConfigError, CheckpointError), match=named):
        Rwkv7ForCausalLM.from_pretrained(write_fla_folder(source, tmp_path / "fla", **change))


def test_weights_that_do_not_fit_the_config_name_the_key(source, tmp_path):
    directory = write_fla_folder(source, tmp_path / "fla", gate_low_rank_dim=64)
    with pytest.raises(CheckpointError, match="g_lora"):
        Rwkv7ForCausalLM.from_pretrained(directory)


def test_config_defaults_follow_fla():
    config = Rwkv7Config()  # the 0.1B shape
    assert (config.num_heads, config.decay_low_rank_dim, config.a_low_rank_dim, config.v_low_rank_dim,
            config.gate_low_rank_dim, config.group_norm_eps) == (12, 64, 64, 32, 128, pytest.approx(64e-5))
