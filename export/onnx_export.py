"""Trace a :class:`~nima_rt.train.model.contract_module.ContractModule` into a contract ONNX graph.

The graph takes ``images`` uint8 ``[N, S, S, 3]`` and returns ``dist``/``mean``/``std`` with ``N``
dynamic; the model's :class:`~nima_rt.contract.spec.ModelMetadata` is stored under the ``nima_rt``
metadata key. Also here: the onnxslim pass (kept only when its outputs match), the fp16 variant
(same uint8 input and float32 outputs) and the names of the contract's own nodes (input
normalisation, score head), which fp16 and INT8 keep in float32.

Exporter choice (docs/guide/export.md): torch's TorchScript exporter (``dynamo=False``). On torch 2.14
the default ``torch.export``-based exporter took ~30x longer and, for timm MobileNetV3, wrote a
graph ONNX's checker and ONNX Runtime refuse (an internal value named ``mean`` collided with the
``mean`` output).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, ContractError, ModelMetadata
from nima_rt.io.files import atomic_path

# The one opset every exported graph uses: LayerNorm is native from 17, ONNX Runtime >= 1.17 and
# TensorRT 10's parser support it, and the TorchScript exporter writes it cleanly.
OPSET = 17
BATCH_DIM = "N"
# Element-wise ops the contract's input normalisation is made of (uint8 NHWC -> normalised NCHW).
_PROLOGUE_OPS = frozenset({"Transpose", "Cast", "Sub", "Div", "Mul", "Add"})
# Linear layers whose output may feed the softmax directly (the head's logits).
_LOGIT_OPS = frozenset({"Gemm", "MatMul", "Add"})
# Largest |difference| the simplified graph may show against the traced one (float32 rounding).
SIMPLIFY_TOLERANCE = 1e-5


class ExportError(ContractError):
    """Export could not produce a valid contract model; ``str()`` is one line naming the file."""


@dataclass(frozen=True)
class GraphReport:
    """What was written: node count before/after simplification and whether it was kept."""

    path: Path
    nodes_traced: int
    nodes_written: int
    simplified: bool
    simplify_note: str


def trace_to_onnx(module: object, input_size: int) -> onnx.ModelProto:
    """Trace ``module`` (a ContractModule in eval mode) with a dynamic batch at the pinned opset."""
    import torch

    sample = torch.from_numpy(_sample_batch(2, input_size))
    buffer = io.BytesIO()
    dynamic = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo (see the module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        with torch.no_grad():
            torch.onnx.export(
                module,
                (sample,),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    return onnx.load_from_string(buffer.getvalue())


def _sample_batch(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Store ``metadata`` as the one ``nima_rt`` metadata_props entry (replacing any earlier one)."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, metadata.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "nima-rt export"


def check_contract_graph(model: onnx.ModelProto, input_size: int, label: str) -> None:
    """``onnx.checker`` full check plus the contract's input/output names, types and shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{label}: ONNX checker rejected the graph ({one_line(exc, 300)})") from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ExportError(f"{label}: graph inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    expected_in = (onnx.TensorProto.UINT8, [BATCH_DIM, input_size, input_size, 3])
    if _type_and_shape(inputs[0]) != expected_in:
        raise ExportError(f"{label}: input {INPUT_NAME!r} is {_type_and_shape(inputs[0])}, expected {expected_in}")
    outputs = {o.name: _type_and_shape(o) for o in model.graph.output}
    expected_out = {
        "dist": (onnx.TensorProto.FLOAT, [BATCH_DIM, 10]),
        "mean": (onnx.TensorProto.FLOAT, [BATCH_DIM]),
        "std": (onnx.TensorProto.FLOAT, [BATCH_DIM]),
    }
    if outputs != expected_out:
        raise ExportError(f"{label}: outputs are {outputs}, expected {expected_out}")


def _type_and_shape(value: onnx.ValueInfoProto) -> tuple[int, list[int | str]]:
    tensor = value.type.tensor_type
    return tensor.elem_type, [d.dim_param or d.dim_value for d in tensor.shape.dim]


def run_onnx(model: onnx.ModelProto, images: np.ndarray) -> list[np.ndarray]:
    """Run a model held in memory with ONNX Runtime on CPU (used to compare graph rewrites)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})


def simplify(model: onnx.ModelProto, input_size: int, label: str) -> tuple[onnx.ModelProto, str]:
    """onnxslim's pass, kept only when the contract checks pass and outputs match the input model.

    Returns the model to write and a one-line note on what happened.
    """
    try:
        import onnxslim
    except ImportError:
        return model, "onnxslim not installed: graph written as traced"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            slim = onnxslim.slim(model)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional pass keeps the traced graph
            return model, f"onnxslim failed ({one_line(exc, 120)}): graph written as traced"
    if slim is None:
        return model, "onnxslim returned nothing: graph written as traced"
    try:
        check_contract_graph(slim, input_size, label)
    except ExportError as exc:
        return model, f"simplified graph broke the contract ({exc}): graph written as traced"
    images = _sample_batch(5, input_size, seed=1)
    before, after = run_onnx(model, images), run_onnx(slim, images)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(before, after, strict=True))
    if worst > SIMPLIFY_TOLERANCE:
        return model, f"simplified graph differs by {worst:.2e} > {SIMPLIFY_TOLERANCE:g}: graph written as traced"
    return slim, f"simplified {len(model.graph.node)} -> {len(slim.graph.node)} nodes (max |diff| {worst:.1e})"


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def contract_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that are the contract's own arithmetic rather than the network's.

    - the prologue: the element-wise nodes reached from ``images`` before the first other op
      (transpose, cast, normalisation);
    - the head: the node producing ``dist`` (the softmax), everything computed from it (``mean``,
      ``std``), and the linear layer producing the softmax's logits.

    fp16 conversion and INT8 quantisation leave these in float32: they cost nothing, and an fp16
    ``mean`` would be quantised in steps of 1/256 near 5.
    """
    _ensure_node_names(model)
    consumers = _consumers(model)
    producer = {out: node for node in model.graph.node for out in node.output}
    names: set[str] = set()
    frontier = [INPUT_NAME]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in _PROLOGUE_OPS and node.name not in names:
                names.add(node.name)
                frontier.extend(node.output)
    dist_node = producer.get("dist")
    if dist_node is not None:
        frontier = [dist_node]
        while frontier:
            node = frontier.pop()
            if node.name in names:
                continue
            names.add(node.name)
            for out in node.output:
                frontier.extend(consumers.get(out, []))
        logits = producer.get(dist_node.input[0]) if dist_node.op_type == "Softmax" else None
        while logits is not None and logits.op_type in _LOGIT_OPS:
            names.add(logits.name)
            if logits.op_type != "Add":
                break
            logits = next((producer[i] for i in logits.input if i in producer), None)
    return sorted(names)


def _ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (fp16/INT8 tools select nodes by name)."""
    used = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Half-precision weights and compute; uint8 input, float32 outputs and contract nodes kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = contract_nodes(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    return drop_cast_round_trips(half)


def drop_cast_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove float32 -> float16 -> float32 Cast pairs (and the nodes left unused).

    The fp16 converter wraps every node it must keep in float32 with casts, so a value passing
    between two such nodes makes a round trip through float16 and loses precision. Reading the
    float32 value directly is exact and cheaper.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {out: node for node in model.graph.node for out in node.output}
    graph_outputs = {o.name for o in model.graph.output}
    replace: dict[str, str] = {}
    for node in model.graph.node:
        if not _is_cast_to(node, onnx.TensorProto.FLOAT):
            continue
        first = producer.get(node.input[0])
        if first is None or not _is_cast_to(first, onnx.TensorProto.FLOAT16):
            continue
        if types.get(first.input[0]) != onnx.TensorProto.FLOAT:
            continue
        if node.output[0] in graph_outputs:
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = first.input[0]
        else:
            replace[node.output[0]] = first.input[0]
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in replace:
                node.input[index] = replace[name]
    _drop_unused_nodes(model)
    _sort_topologically(model)
    return model


def _sort_topologically(model: onnx.ModelProto) -> None:
    """Order nodes so each comes after the producers of its inputs (the converter appends casts)."""
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    pending = list(model.graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ExportError(f"graph {model.graph.name!r} has a cycle or an input no node produces")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in ready_ids]
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def _is_cast_to(node: onnx.NodeProto, elem_type: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == elem_type for a in node.attribute)


def _drop_unused_nodes(model: onnx.ModelProto) -> None:
    while True:
        used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        dead = [node for node in model.graph.node if not any(out in used for out in node.output)]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` atomically (a temporary file in the same folder, then a rename)."""
    with atomic_path(path) as temporary:
        onnx.save(model, str(temporary))


def finish_model(model: onnx.ModelProto, metadata: ModelMetadata, label: str, simplify_graph: bool = True,
                 ) -> tuple[onnx.ModelProto, GraphReport]:
    """Simplify (optionally), embed metadata and check a traced fp32 model; nothing is written."""
    traced_nodes = len(model.graph.node)
    check_contract_graph(model, metadata.input_size, label)
    note = "simplification off"
    if simplify_graph:
        model, note = simplify(model, metadata.input_size, label)
    set_metadata(model, metadata)
    check_contract_graph(model, metadata.input_size, label)
    report = GraphReport(Path(label), traced_nodes, len(model.graph.node), note.startswith("simplified"), note)
    return model, report
