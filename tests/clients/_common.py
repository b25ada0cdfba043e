"""Helpers shared by the client scripts in this folder (not a client itself).

Every script prints exactly one JSON object on stdout and nothing else: `result_stdout()`
moves sys.stdout to stderr at start-up, so a library that prints (tritonclient's verbose
mode, a logger configured for stdout) cannot corrupt the result, and `emit()` writes the
object to the real stdout. Failures go to stderr with a non-zero exit status (`fail()`).
"""

import base64
import json
import os
import re
import sys
import traceback

_real_stdout = None

# Tensors with at most this many elements also have their values in the JSON result.
MAX_JSON_ELEMENTS = 65536


def result_stdout():
    global _real_stdout
    if _real_stdout is None:
        _real_stdout = sys.stdout
        sys.stdout = sys.stderr


def emit(obj):
    out = _real_stdout or sys.stdout
    out.write(json.dumps(obj, sort_keys=False, default=_json_default))
    out.write("\n")
    out.flush()


def fail(message, code=1):
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    sys.exit(code)


def run(parse_args, main):
    """main(parse_args()); --help goes to stdout as usual, but from then on stdout is
    reserved for the result. An uncaught exception becomes a traceback on stderr, exit 1."""
    args = parse_args()
    result_stdout()
    try:
        main(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report anything, then fail
        traceback.print_exc(file=sys.stderr)
        fail(f"{type(e).__name__}: {e}")


def bool_arg(text):
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def decode_bytes_element(value):
    """A BYTES element as JSON: its UTF-8 text, or {"base64": ...} when it is not UTF-8."""
    if isinstance(value, str):
        return value
    if not isinstance(value, (bytes, bytearray)):
        return str(value)
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}


def tensor_values(arr, datatype):
    """The flattened values of a numpy tensor as JSON-ready Python values."""
    import numpy as np

    flat = np.asarray(arr).reshape(-1)
    if datatype == "BYTES" or flat.dtype == np.object_:
        return [decode_bytes_element(v) for v in flat]
    if datatype == "BF16" or flat.dtype.kind not in "biuf":
        flat = flat.astype(np.float32)
    if flat.dtype.kind == "f":
        return [_float(v) for v in flat.tolist()]
    return flat.tolist()


def _float(v):
    # JSON has no NaN/Inf; spell them as strings so the result stays valid JSON.
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def npy_path(input_npy, output_name):
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", output_name)
    return f"{input_npy}.out.{safe}.npy"


def describe_output(arr, name, datatype, shape, input_npy, binary=None):
    """The JSON entry for one output tensor; numeric data also goes to a .npy file.

    BYTES tensors are not written to .npy (that would need pickle); their elements are in
    "data" as UTF-8 strings (or {"base64": ...}).
    """
    import numpy as np

    entry = {"name": name, "datatype": datatype, "shape": list(shape)}
    if binary is not None:
        entry["binary"] = binary
    if arr is None:
        entry["npy"] = None
        entry["data"] = None
        return entry
    arr = np.asarray(arr)
    if datatype == "BYTES" or arr.dtype == np.object_:
        entry["npy"] = None
    else:
        path = npy_path(input_npy, name) if input_npy else None
        if path:
            to_save = arr.astype(np.float32) if datatype == "BF16" else arr
            np.save(path, np.ascontiguousarray(to_save), allow_pickle=False)
            entry["npy"] = os.path.abspath(path)
            entry["npy_dtype"] = str(to_save.dtype)
        else:
            entry["npy"] = None
    entry["numpy_shape"] = list(arr.shape)
    if arr.size <= MAX_JSON_ELEMENTS:
        entry["data"] = tensor_values(arr, datatype)
    return entry


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, (bytes, bytearray)):
        return decode_bytes_element(o)
    return str(o)
