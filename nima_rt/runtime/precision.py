"""What the runtime says about a model's precision on the device that runs it: one line, or nothing.

Reduced precision is a GPU matter. ONNX Runtime's CPU backend runs a model file as it is: ``--precision
fp16|fp32`` choose what GPU backends compute in and change nothing on CPU, and an fp16 file on CPU runs its
half-precision operators through casts and slower kernels (slower than its float32 original; docs/guide/export.md).
The Scorer appends this note to the model's backend line and ``nima-rt info`` to its precision line, so
neither is silent.
"""

from __future__ import annotations

from nima_rt.io.model_file import ModelFile


def precision_note(model: ModelFile, device: str, requested: str | None = None) -> str | None:
    """A note when ``model`` runs on the CPU in a way its user may not expect, else None: ``requested``
    (``--precision``) is ignored there, or the file is fp16."""
    if device != "cpu":
        return None
    notes = []
    if requested in ("fp16", "fp32") and requested != model.precision:
        notes.append(f"--precision {requested} applies to GPU backends: "
                     f"the CPU runs this {model.precision} file as it is")
    if model.precision == "fp16":
        notes.append("an fp16 file runs slower on CPU than its fp32 original: score on CPU with the fp32 file")
    return "; ".join(notes) or None


__all__ = ["precision_note"]
