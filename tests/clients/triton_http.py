#!/usr/bin/env python3
"""Drives a server with Triton's own HTTP client (tritonclient.http) and reports what came back.

  triton_http.py --url 127.0.0.1:PORT --model NAME [--version V] --input-npy FILE
                 --input-name NAME --datatype FP32 --binary {true,false} [--output NAME ...]

Calls is_server_live, is_server_ready, is_model_ready, get_server_metadata,
get_model_metadata, get_model_config, then one infer with the .npy as the input
(set_data_from_numpy(binary_data=BINARY)). With --output, each is requested as
InferRequestedOutput(name, binary_data=BINARY); without, none is requested (the client then
asks for every output in binary). Prints one JSON object:

  {"live", "ready", "model_ready", "server_metadata", "model_metadata", "model_config",
   "request": {...what was sent...}, "response": <the response's JSON header>,
   "outputs": {NAME: {"name", "datatype", "shape", "binary", "npy", "npy_dtype",
                      "numpy_shape", "data"?}}}

Each numeric output is saved as <input-npy>.out.<NAME>.npy ("npy" is its absolute path);
"binary" says whether the server sent it as binary data; "data" (the flattened values) is
there for tensors of at most 65536 elements, BYTES as UTF-8 strings. Nothing is asserted:
the caller compares. Exit 0 when every call returned; 1, with the error on stderr, if one
raised (an InferenceServerException's status and message are printed).
"""

import argparse
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="host:port, no scheme (tritonclient's form)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="", help="model version (default: the server's choice)")
    p.add_argument("--input-npy", required=True, help=".npy file holding the input tensor")
    p.add_argument("--input-name", required=True)
    p.add_argument("--datatype", required=True, help="KServe v2 datatype, e.g. FP32")
    p.add_argument("--binary", type=_common.bool_arg, required=True,
                   help="true: binary tensor data extension; false: JSON data")
    p.add_argument("--output", action="append", default=[],
                   help="requested output name (repeatable; default: none requested)")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    return p.parse_args()


def main(args):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    arr = np.load(args.input_npy, allow_pickle=args.datatype == "BYTES")
    want = triton_to_np_dtype(args.datatype)
    if args.datatype != "BYTES" and want is not None and arr.dtype != want:
        print(f"triton_http.py: casting input from {arr.dtype} to {np.dtype(want)}",
              file=sys.stderr)
        arr = arr.astype(want)

    client = httpclient.InferenceServerClient(
        url=args.url, connection_timeout=args.timeout, network_timeout=args.timeout)
    result = {}
    step = "connect"
    try:
        step = "is_server_live"
        result["live"] = client.is_server_live()
        step = "is_server_ready"
        result["ready"] = client.is_server_ready()
        step = "is_model_ready"
        result["model_ready"] = client.is_model_ready(args.model, args.version)
        step = "get_server_metadata"
        result["server_metadata"] = client.get_server_metadata()
        step = "get_model_metadata"
        result["model_metadata"] = client.get_model_metadata(args.model, args.version)
        step = "get_model_config"
        result["model_config"] = client.get_model_config(args.model, args.version)

        step = "infer"
        inp = httpclient.InferInput(args.input_name, list(arr.shape), args.datatype)
        inp.set_data_from_numpy(arr, binary_data=args.binary)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=args.binary)
                   for name in args.output] or None
        result["request"] = {
            "model": args.model, "version": args.version, "input_name": args.input_name,
            "datatype": args.datatype, "shape": list(arr.shape), "binary": args.binary,
            "outputs": args.output,
        }
        res = client.infer(args.model, [inp], model_version=args.version, outputs=outputs)
    except InferenceServerException as e:
        _common.fail(f"{step} failed: status={e.status()} message={e.message()}"
                     f"{' debug=' + str(e.debug_details()) if e.debug_details() else ''}")
    finally:
        client.close()

    response = res.get_response()
    result["response"] = response
    result["outputs"] = {}
    for out in response.get("outputs") or []:
        name = out["name"]
        params = out.get("parameters") or {}
        result["outputs"][name] = _common.describe_output(
            res.as_numpy(name), name, out.get("datatype"), out.get("shape", []),
            args.input_npy, binary="binary_data_size" in params)
    _common.emit(result)


if __name__ == "__main__":
    _common.run(parse_args, main)
