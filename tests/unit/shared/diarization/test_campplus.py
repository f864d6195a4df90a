"""Reading a PyTorch state_dict zip without torch: tensors rebuilt exactly, code never run.

The zips here are written as `torch.save` writes them (archive/data.pkl naming storages by
persistent id, archive/data/<key> holding raw bytes), with stand-ins for torch's globals
registered only while pickling. The real CAM++ conversion is checked against the original
network in tests/integration/test_speaker_models.py.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.diarization import campplus
from shared.diarization.campplus import StateDictError, read_state_dict
from shared.schemas import EMBEDDING_DIM


class _Storage:
    def __init__(self, key: str, data: np.ndarray):
        self.key = key
        self.data = data


class _Tensor:
    def __init__(
        self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]
    ):
        self.args: tuple[Any, ...] = (storage, offset, shape, stride, False, OrderedDict())


def _torch_save(tensors: dict[str, _Tensor], monkeypatch: pytest.MonkeyPatch) -> bytes:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None: ...

    class FloatStorage: ...

    class LongStorage: ...

    for name, value in (("FloatStorage", FloatStorage), ("LongStorage", LongStorage)):
        value.__module__, value.__qualname__ = "torch", name
        setattr(torch, name, value)
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    kinds = {np.dtype("float32"): FloatStorage, np.dtype("int64"): LongStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, _Storage):
                return ("storage", kinds[obj.data.dtype], obj.key, "cpu", obj.data.size)
            return None

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, _Tensor):
                return (_rebuild_tensor_v2, obj.args)
            return NotImplemented

    pickled = io.BytesIO()
    Pickler(pickled, protocol=2).dump(tensors)
    archive = io.BytesIO()
    storages = {t.args[0].key: t.args[0].data for t in tensors.values()}
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("archive/data.pkl", pickled.getvalue())
        out.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            out.writestr(f"archive/data/{key}", data.astype(data.dtype.newbyteorder("<")).tobytes())
        out.writestr("archive/version", "3\n")
    return archive.getvalue()


def test_tensors_are_rebuilt_with_their_offsets_and_strides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = _Storage("0", np.arange(12, dtype=np.float32))
    counts = _Storage("1", np.array([7], dtype=np.int64))
    data = _torch_save(
        {
            "conv.weight": _Tensor(shared, 0, (3, 4), (4, 1)),
            "conv.weight_t": _Tensor(shared, 0, (4, 3), (1, 4)),  # a transposed view
            "tail": _Tensor(shared, 10, (2,), (1,)),
            "bn.num_batches_tracked": _Tensor(counts, 0, (), ()),
        },
        monkeypatch,
    )
    monkeypatch.undo()  # the reader must not need the stand-ins
    tensors = read_state_dict(data)
    base = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(tensors["conv.weight"], base.reshape(3, 4))
    np.testing.assert_array_equal(tensors["conv.weight_t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(tensors["tail"], [10, 11])
    assert tensors["bn.num_batches_tracked"].dtype == np.int64
    assert int(tensors["bn.num_batches_tracked"]) == 7
    assert tensors["conv.weight"].flags.writeable  # a copy, not a view of the zip's bytes


def test_a_tensor_outside_its_storage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = _Storage("0", np.arange(4, dtype=np.float32))
    data = _torch_save({"w": _Tensor(storage, 2, (4,), (1,))}, monkeypatch)
    with pytest.raises(StateDictError, match="outside its storage"):
        read_state_dict(data)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("archive/data.pkl", pickle.dumps({"w": _Exploit(marker)}, protocol=2))
    with pytest.raises(StateDictError, match="system, which is refused"):
        read_state_dict(archive.getvalue())
    assert not marker.exists()


def test_a_file_that_is_not_a_zip_is_refused() -> None:
    with pytest.raises(StateDictError, match="not a zip"):
        read_state_dict(b"\x80\x02}q\x00.")


def test_the_embedding_length_restated_for_the_model_stage_is_the_fleets() -> None:
    assert campplus.EMBEDDING_DIM == EMBEDDING_DIM
