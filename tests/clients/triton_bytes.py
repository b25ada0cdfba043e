#!/usr/bin/env python3
"""Sends a file (e.g. a JPEG) as one BYTES tensor with tritonclient.http, binary and JSON.

  triton_bytes.py --url 127.0.0.1:PORT --model NAME --file IMG.jpg [--input-name data]
                  [--version V] [--output NAME ...] [--json-encoding {base64,utf8}]

Two infer calls, each with one BYTES input of shape [1]:
  "binary": the file's bytes through the binary tensor data extension
            (set_data_from_numpy(binary_data=True)); outputs requested with binary_data=True
            when --output is given, else none (the client then sets binary_data_output).
  "json":   the element inline in the JSON body. JSON can only carry text and tritonclient
            refuses bytes that are not UTF-8, so by default the element is the file's base64
            text (--json-encoding base64; utf8 sends the bytes as they are, which only works
            for UTF-8 files). Outputs are requested with binary_data=False: the --output
            names, else every output that get_model_metadata lists.
Prints one JSON object:

  {"binary": CALL, "json": CALL}
  CALL = {"request": {...what was sent...}, "response": <the response's JSON header>,
          "outputs": {NAME: {"name", "datatype", "shape", "binary", "data", ...}}}
         or {"request": ..., "error": {"status", "message"}} if the server refused it.

BYTES output elements are decoded as UTF-8 strings ({"base64": ...} if not UTF-8); numeric
outputs are listed too, and with --out-dir DIR also saved as DIR/<file name>.<call>.out.<NAME>.npy
(nothing is written next to --file, which may be in the source tree). Exit 0 when both calls
succeeded, 1 otherwise (the JSON is still printed; the errors also go to stderr).
"""

import argparse
import base64
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="host:port, no scheme (tritonclient's form)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="", help="model version (default: the server's choice)")
    p.add_argument("--file", required=True, help="file whose bytes make the one BYTES element")
    p.add_argument("--input-name", default="data")
    p.add_argument("--output", action="append", default=[],
                   help="requested output name (repeatable)")
    p.add_argument("--json-encoding", choices=("base64", "utf8"), default="base64",
                   help="how the JSON call carries the file (default: base64)")
    p.add_argument("--out-dir", help="write numeric outputs as .npy files here (default: don't)")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    return p.parse_args()


def main(args):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    with open(args.file, "rb") as f:
        payload = f.read()

    prefix = None
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        prefix = os.path.join(args.out_dir, os.path.basename(args.file))

    client = httpclient.InferenceServerClient(
        url=args.url, connection_timeout=args.timeout, network_timeout=args.timeout)
    result = {}
    failed = []
    try:
        json_outputs = list(args.output)
        if not json_outputs:
            try:
                meta = client.get_model_metadata(args.model, args.version)
                json_outputs = [o["name"] for o in meta.get("outputs") or [] if "name" in o]
            except InferenceServerException as e:
                print(f"triton_bytes.py: get_model_metadata failed ({e.status()}: "
                      f"{e.message()}); the JSON call requests no outputs", file=sys.stderr)

        for call, binary in (("binary", True), ("json", False)):
            if binary or args.json_encoding == "utf8":
                element, encoding = payload, "raw"
            else:
                element, encoding = base64.b64encode(payload), "base64"
            arr = np.array([element], dtype=np.object_)
            requested = args.output if binary else json_outputs
            entry = {"request": {
                "model": args.model, "version": args.version, "input_name": args.input_name,
                "datatype": "BYTES", "shape": [1], "binary": binary, "encoding": encoding,
                "file_bytes": len(payload), "element_bytes": len(element),
                "outputs": requested,
            }}
            result[call] = entry
            try:
                inp = httpclient.InferInput(args.input_name, [1], "BYTES")
                inp.set_data_from_numpy(arr, binary_data=binary)
                outputs = [httpclient.InferRequestedOutput(n, binary_data=binary)
                           for n in requested] or None
                res = client.infer(args.model, [inp], model_version=args.version,
                                   outputs=outputs)
            except InferenceServerException as e:
                entry["error"] = {"status": e.status(), "message": e.message()}
                failed.append(f"{call} call failed: status={e.status()} message={e.message()}")
                continue
            response = res.get_response()
            entry["response"] = response
            entry["outputs"] = {}
            for out in response.get("outputs") or []:
                name = out["name"]
                params = out.get("parameters") or {}
                entry["outputs"][name] = _common.describe_output(
                    res.as_numpy(name), name, out.get("datatype"), out.get("shape", []),
                    prefix and f"{prefix}.{call}", binary="binary_data_size" in params)
    finally:
        client.close()

    _common.emit(result)
    if failed:
        _common.fail("; ".join(failed))


if __name__ == "__main__":
    _common.run(parse_args, main)
