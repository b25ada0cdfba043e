"""The glue between a TorchServe-style Python handler class and the wasmserve:handler WIT
world, for components built with componentize-py.

A handler is a class with TorchServe's methods:

    class MyHandler(BaseHandler):
        def initialize(self, context): ...       # once per instance
        def preprocess(self, data): ...          # list of rows -> list of input Tensors
        def postprocess(self, outputs): ...      # list of output Tensors -> list of answers

    WitWorld = export(MyHandler)

`data` is TorchServe's batch of request rows: here always one row, a dict from part name
("body" for a raw body, the field names of a form) to bytes. The host batches the tensors
itself. `postprocess` returns one answer per row, like TorchServe: a `bytes` answer is
sent as is, anything else as JSON. Raise `HandlerError(status, message)` to fail the
request with that status; any other exception fails it with a 500.

componentize-py bundles only the modules imported when the component is built, so import
everything at the top of a module, never inside a function.
"""

import json
import struct
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Dtype, Error, Response, Tensor

MODEL_DIR = "/model"

# struct format character and size of each dtype (little-endian). float16 via "e".
_FORMATS = {
    Dtype.FLOAT32: ("f", 4),
    Dtype.FLOAT64: ("d", 8),
    Dtype.FLOAT16: ("e", 2),
    Dtype.INT64: ("q", 8),
    Dtype.INT32: ("i", 4),
    Dtype.INT16: ("h", 2),
    Dtype.INT8: ("b", 1),
    Dtype.UINT8: ("B", 1),
    Dtype.BOOLEAN: ("?", 1),
}


class HandlerError(Exception):
    """Fails the request with `status` and TorchServe's error body."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Context:
    """What TorchServe's `context` gives `initialize`, as far as it applies here."""

    def __init__(self, ctx):
        self.model_name = ctx.model_name
        self.model_version = ctx.model_version
        self.manifest = json.loads(ctx.manifest or "{}")
        # The model-config.yaml keys meant for the handler (TorchServe: model_yaml_config).
        self.model_yaml_config = json.loads(ctx.config or "{}")
        self.system_properties = {
            "model_dir": MODEL_DIR,
            "batch_size": ctx.batch_size,
            "device": ctx.device,
        }


def tensor(shape, values, dtype=Dtype.FLOAT32):
    """A WIT tensor of `dtype` with `shape` from a flat sequence of numbers."""
    fmt, _ = _FORMATS[dtype]
    count = 1
    for d in shape:
        count *= d
    if len(values) != count:
        raise ValueError(f"{len(values)} values for shape {shape}")
    return Tensor("", dtype, list(shape), struct.pack(f"<{count}{fmt}", *values))


def tensor_from_bytes(shape, data, dtype=Dtype.UINT8):
    """A WIT tensor whose data is already little-endian bytes."""
    return Tensor("", dtype, list(shape), bytes(data))


def values(t):
    """The elements of a WIT tensor as a flat tuple of Python numbers."""
    if t.dtype not in _FORMATS:
        raise HandlerError(500, f"unsupported output dtype {t.dtype.name.lower()}")
    fmt, size = _FORMATS[t.dtype]
    return struct.unpack(f"<{len(t.data) // size}{fmt}", t.data)


def log(message, level=host.Level.INFO):
    """A line in the model log."""
    host.log(level, str(message))


class BaseHandler:
    """TorchServe's BaseHandler shape; override what you need."""

    def initialize(self, context):
        self.context = context
        self.initialized = True

    def preprocess(self, data):
        """Default: the request's bytes as a uint8 tensor [1, len]."""
        body = input_bytes(data[0])
        return [tensor_from_bytes([1, len(body)], body)]

    def postprocess(self, outputs):
        """Default: every output as {"name", "shape", "data"}."""
        return [[{"name": t.name, "shape": list(t.shape), "data": list(values(t))} for t in outputs]]


def input_bytes(row):
    """TorchServe's convention: the "data" part, else "body", else the only part."""
    for key in ("data", "body"):
        if key in row:
            return row[key]
    if len(row) == 1:
        return next(iter(row.values()))
    raise HandlerError(400, "the request has no 'data' or 'body' part")


def _error(e):
    if isinstance(e, HandlerError):
        return Err(Error(e.status, e.message))
    log("".join(traceback.format_exception(e)), host.Level.ERROR)
    return Err(Error(500, f"{type(e).__name__}: {e}"))


def _row(req):
    return {p.name: p.data for p in req.parts}


def export(handler_class):
    """The class componentize-py instantiates for the world's exports (`WitWorld`)."""

    class Exports(wit_world.WitWorld):
        handler = None

        def init(self, ctx):
            try:
                handler = handler_class()
                handler.initialize(Context(ctx))
                Exports.handler = handler
            except Exception as e:
                raise Err(f"{type(e).__name__}: {e}") from None

        def preprocess(self, req):
            try:
                return list(Exports.handler.preprocess([_row(req)]))
            except Exception as e:
                raise _error(e) from None

        def postprocess(self, req, outputs):
            try:
                answers = Exports.handler.postprocess(list(outputs))
                answer = answers[0]
                if isinstance(answer, (bytes, bytearray)):
                    return Response(200, [], bytes(answer))
                return Response(200, [], json.dumps(answer).encode())
            except Exception as e:
                raise _error(e) from None

    return Exports
