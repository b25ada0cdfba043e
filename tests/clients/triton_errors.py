#!/usr/bin/env python3
"""Reports how tritonclient.http sees a server's error answers.

  triton_errors.py --url 127.0.0.1:PORT --model NAME [--missing no_such_model]

Each case is a call that should fail; the client turns a non-200 answer into
tritonclient.utils.InferenceServerException (its message is the body's "error", or a
"failed to decode" message when the body is not {"error": ...}). Cases:

  model_metadata_missing  get_model_metadata(MISSING)
  model_config_missing    get_model_config(MISSING)
  infer_missing           infer(MISSING) with one FP32 [1] input named "input"
  infer_bad_input         infer(NAME) with an input named "no_such_input" (datatype and
                          shape [1] taken from NAME's first metadata input, FP32 if none)
and, for reference, model_ready_missing: is_model_ready(MISSING), which returns a bool.

Prints one JSON object {CASE: {"raised": true, "status": "404", "message": "...",
"debug_details": ...}} ("status" is the HTTP status as the client gives it: a string), or
{"raised": false, "result": ...} when the call unexpectedly succeeded. Nothing is
asserted: exit 0 whenever the cases ran; 1 only if the script itself broke (for example,
no connection).
"""

import argparse
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="host:port, no scheme (tritonclient's form)")
    p.add_argument("--model", required=True, help="a model the server has (for infer_bad_input)")
    p.add_argument("--missing", default="no_such_model", help="a model name the server lacks")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    return p.parse_args()


def main(args):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    client = httpclient.InferenceServerClient(
        url=args.url, connection_timeout=args.timeout, network_timeout=args.timeout)

    def case(fn):
        try:
            value = fn()
        except InferenceServerException as e:
            return {"raised": True, "status": e.status(), "message": e.message(),
                    "debug_details": e.debug_details()}
        if hasattr(value, "get_response"):
            value = value.get_response()
        return {"raised": False, "result": value}

    def fp32_input(name):
        inp = httpclient.InferInput(name, [1], "FP32")
        inp.set_data_from_numpy(np.zeros([1], dtype=np.float32), binary_data=False)
        return inp

    def bad_input():
        datatype = "FP32"
        try:
            meta = client.get_model_metadata(args.model)
            inputs = meta.get("inputs") or []
            if inputs and inputs[0].get("datatype"):
                datatype = inputs[0]["datatype"]
        except InferenceServerException as e:
            print(f"triton_errors.py: get_model_metadata({args.model}) failed "
                  f"({e.status()}: {e.message()}); using FP32", file=sys.stderr)
        inp = httpclient.InferInput("no_such_input", [1], datatype)
        if datatype == "BYTES":
            data = np.array([b"x"], dtype=np.object_)
        else:
            data = np.zeros([1], dtype=triton_to_np_dtype(datatype) or np.float32)
        inp.set_data_from_numpy(data, binary_data=datatype in ("FP16", "BF16"))
        return client.infer(args.model, [inp])

    result = {}
    try:
        result["model_ready_missing"] = {"result": client.is_model_ready(args.missing)}
        result["model_metadata_missing"] = case(lambda: client.get_model_metadata(args.missing))
        result["model_config_missing"] = case(lambda: client.get_model_config(args.missing))
        result["infer_missing"] = case(
            lambda: client.infer(args.missing, [fp32_input("input")]))
        result["infer_bad_input"] = case(bad_input)
    finally:
        client.close()
    _common.emit(result)


if __name__ == "__main__":
    _common.run(parse_args, main)
