import json

import pytest
import torch

from dapper.modelfile import ModelFileError, read_model, save_model


def _saved(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = save_model(net, {"architecture": {"in": 3}}, tmp_path / "net.safetensors")
    return net, path


def test_a_saved_model_reads_back_with_its_config(tmp_path):
    net, path = _saved(tmp_path)
    state, config = read_model(path, "test net", "make it")
    assert config["architecture"] == {"in": 3} and len(config["sha256"]) == 64
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_missing_damaged_and_swapped_files_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make it with `python -m dapper x`"):
        read_model(tmp_path / "none.safetensors", "test net", "python -m dapper x")
    _, path = _saved(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(ModelFileError, match="sha256 differs"):
        read_model(path, "test net", "make it")
    config = json.loads(path.with_suffix(".json").read_text())
    del config["sha256"]  # an older JSON without the hash: the safetensors check still catches it
    path.with_suffix(".json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        read_model(path, "test net", "make it")
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_model(path, "test net", "make it")
