"""stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``, and NVIDIA's pickles
converted from TensorFlow): persistent objects turned into plain records, state dicts rebuilt
from them."""

from __future__ import annotations

import torch

from .common import NETWORK_CLASSES, CheckpointError, NetworkState, as_tensor, bind_kwargs, plain
from .unpickle import PersistentRecord


def _record_state_dict(path, record: PersistentRecord) -> dict[str, torch.Tensor]:
    sd = {}
    seen = set()

    def walk(rec, prefix, depth):
        if depth > 32 or id(rec) in seen:
            raise CheckpointError(path, "module tree is cyclic or too deep")
        seen.add(id(rec))
        st = rec.state
        skip = st.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, t in dict(st.get(group) or {}).items():
                if t is None or (group == "_buffers" and name in skip):
                    continue
                sd[prefix + str(name)] = as_tensor(path, prefix + str(name), t)
        for name, child in dict(st.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(path, f"submodule {prefix}{name} is not a network record")
            walk(child, f"{prefix}{name}.", depth + 1)
        seen.discard(id(rec))

    walk(record, "", 0)
    return sd


def ada_state(path, data, network) -> NetworkState:
    if not isinstance(data, dict):
        raise CheckpointError(path, f"pickle holds a {type(data).__name__}, not a network dict")
    rec = data.get(network)
    if not isinstance(rec, PersistentRecord):
        nets = sorted(k for k, v in data.items() if isinstance(v, PersistentRecord))
        raise CheckpointError(path, f"no network {network!r} in the pickle (it holds {nets})")
    if rec.class_name not in NETWORK_CLASSES:
        raise CheckpointError(path, f"network {network!r} is a {rec.class_name}, which dapper "
                              "cannot build")
    try:
        args = plain(list(rec.init_args or ()))
        kwargs = plain(dict(rec.init_kwargs or {}))
    except ValueError as exc:
        raise CheckpointError(path, f"init arguments of {network!r}: {exc}") from None
    kwargs = bind_kwargs(path, rec.class_name, args, kwargs)
    sd = _record_state_dict(path, rec)
    if any(k.startswith("synthesis.input.") for k in sd):
        raise CheckpointError(path, "this is a StyleGAN3 generator, which dapper does not support")
    meta = {}
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict):
        try:
            meta["training_set_kwargs"] = plain(tsk)
        except ValueError:
            pass
    return NetworkState(rec.class_name, kwargs, sd, "ada-pkl", str(path), meta)


