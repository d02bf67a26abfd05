"""Model paths are opened only when they are regular files of a sane size (issue 25, item 9): a FIFO
never hangs `score`/`info`, /dev/zero is never read, an oversized file is refused, all in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO

from nima_rt.contract.spec import ContractError
from nima_rt.io.files import RefusedFile, file_sha256
from nima_rt.io.model_file import MAX_ONNX_BYTES, ModelNotFound, load_model_file


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`nima-rt ...` in a fresh interpreter, killed after ``timeout`` (a hang fails the test, not the suite)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "nima_rt", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [["info"], ["score", "--model"]])
def test_a_fifo_as_model_is_refused_not_waited_on(tmp_path: Path, command: list[str]) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    args = [*command, str(fifo)] + ([str(photo)] if command[0] == "score" else [])
    done = cli(*args, timeout=60)  # before: blocked forever in open()
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {fifo}: is a FIFO, not a regular file"


def test_a_device_is_never_read(tmp_path: Path) -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    with pytest.raises(ModelNotFound, match=r"^/dev/zero: is a device, not a regular file$"):
        load_model_file("/dev/zero")  # before: read until MemoryError
    link = tmp_path / "zero.engine"
    link.symlink_to("/dev/zero")
    with pytest.raises(ModelNotFound, match=r"zero.engine: is a device, not a regular file$"):
        load_model_file(link)


def test_an_engine_sidecar_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    os.mkfifo(tmp_path / "m.engine.json")
    with pytest.raises(ModelNotFound, match=r"m.engine.json: is a FIFO, not a regular file$"):
        load_model_file(engine)


def test_an_onnx_file_larger_than_protobuf_allows_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with big.open("wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_ONNX_BYTES + 1)
    with pytest.raises(ModelNotFound) as error:
        load_model_file(big)
    expected = f"{MAX_ONNX_BYTES + 1} bytes, more than the {MAX_ONNX_BYTES} an ONNX model file may hold"
    assert str(error.value) == f"{big}: {expected}"


def test_metadata_is_read_without_loading_the_graph(tiny_model: Path, tmp_path: Path) -> None:
    """A model whose graph is padded with 64 MiB of initialiser-like bytes reads its metadata by seeking
    past them: same metadata, and the sha256 covers the whole file."""
    padded = tmp_path / "padded.onnx"
    shutil.copy(tiny_model, padded)
    pad = 64 << 20
    with padded.open("ab") as handle:  # field 8 (initializer-sized bytes), wire type 2, then the payload
        length, out = pad, bytearray([8 << 3 | 2])
        while True:
            byte, length = length & 0x7F, length >> 7
            out.append(byte | (0x80 if length else 0))
            if not length:
                break
        handle.write(bytes(out))
        handle.truncate(handle.tell() + pad)
    model = load_model_file(padded)
    assert model.metadata == load_model_file(tiny_model).metadata
    assert model.sha256 == file_sha256(padded)


def test_a_truncated_onnx_file_is_a_contract_error(tiny_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_model.read_bytes()[:200])
    with pytest.raises(ContractError, match=r"cut.onnx: not an ONNX model file \(truncated field\)$"):
        load_model_file(cut)


def test_hashing_refuses_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "checkpoint.pt"
    os.mkfifo(fifo)
    with pytest.raises(RefusedFile, match=r"checkpoint.pt: is a FIFO, not a regular file$"):
        file_sha256(fifo)
