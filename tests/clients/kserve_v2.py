#!/usr/bin/env python3
"""Drives a server with the kserve SDK's v2 REST client and reports what came back.

  kserve_v2.py --url http://127.0.0.1:PORT --model NAME --input-npy FILE
               --input-name NAME --datatype FP32 [--binary] [--binary-output] [--output NAME ...]

Uses kserve.InferenceRESTClient(RESTConfig(protocol="v2")) (asynchronous, httpx):
is_server_live, is_server_ready, is_model_ready, then infer with an InferRequest holding one
InferInput from the .npy. The SDK sends JSON data unless --binary
(set_data_from_numpy(binary_data=True): binary tensor data extension). By default it asks for
no particular output encoding, as the SDK does; --binary-output adds the request parameter
binary_data_output: true (and binary_data: true on each --output). Prints one JSON object:

  {"live", "ready", "model_ready", "request": {...}, "binary_response", "model_name",
   "model_version", "id", "parameters", "outputs": {NAME: {"name", "datatype", "shape", "npy", "npy_dtype",
                                    "numpy_shape", "data"?}}}

Numeric outputs are saved as <input-npy>.kserve.out.<NAME>.npy (".kserve" so that a run of
triton_http.py on the same input is not overwritten). The SDK turns binary outputs into lists
before handing them back, so "binary_response" (whether the answer carried an
Inference-Header-Content-Length header) says how they came. kserve 0.21's InferResponse drops
model_version when it parses the REST answer (it is always null here). Exit 0 when every call
returned; 1 with the error on stderr otherwise (an httpx.HTTPStatusError carries the
server's "error" and the status line).
"""

import argparse
import asyncio
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="base URL with scheme, e.g. http://127.0.0.1:8080")
    p.add_argument("--model", required=True)
    p.add_argument("--input-npy", required=True, help=".npy file holding the input tensor")
    p.add_argument("--input-name", required=True)
    p.add_argument("--datatype", required=True, help="KServe v2 datatype, e.g. FP32")
    p.add_argument("--binary", action="store_true",
                   help="send the input as binary tensor data (default: JSON)")
    p.add_argument("--binary-output", action="store_true",
                   help="ask for binary outputs (request parameter binary_data_output)")
    p.add_argument("--output", action="append", default=[],
                   help="requested output name (repeatable; default: none requested)")
    p.add_argument("--timeout", type=float, default=60.0, help="request timeout, seconds")
    return p.parse_args()


async def run(args):
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput
    from kserve.utils.numpy_codec import to_np_dtype

    arr = np.load(args.input_npy, allow_pickle=args.datatype == "BYTES")
    want = to_np_dtype(args.datatype)
    if args.datatype != "BYTES" and want is not None and arr.dtype != want:
        print(f"kserve_v2.py: casting input from {arr.dtype} to {np.dtype(want)}",
              file=sys.stderr)
        arr = arr.astype(want)

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=args.timeout, retries=0))
    result = {}
    try:
        result["live"] = await client.is_server_live(args.url)
        result["ready"] = await client.is_server_ready(args.url)
        result["model_ready"] = await client.is_model_ready(args.url, args.model)

        inp = InferInput(name=args.input_name, shape=list(arr.shape), datatype=args.datatype)
        inp.set_data_from_numpy(arr, binary_data=args.binary)
        requested = [RequestedOutput(name, {"binary_data": True} if args.binary_output else None)
                     for name in args.output] or None
        request = InferRequest(
            model_name=args.model, infer_inputs=[inp], request_outputs=requested,
            parameters={"binary_data_output": True} if args.binary_output else None)
        result["request"] = {
            "model": args.model, "input_name": args.input_name, "datatype": args.datatype,
            "shape": list(arr.shape), "binary": args.binary,
            "binary_output": args.binary_output, "outputs": args.output,
        }
        headers = {}
        response = await client.infer(args.url, request, model_name=args.model,
                                      response_headers=headers)
    finally:
        await client.close()

    # The SDK decodes binary outputs into lists; whether the answer used the binary tensor
    # data extension shows in its headers.
    result["binary_response"] = "inference-header-content-length" in headers
    result["model_name"] = response.model_name
    result["model_version"] = response.model_version
    result["id"] = response.id
    result["parameters"] = response.parameters
    result["outputs"] = {}
    for out in response.outputs:
        result["outputs"][out.name] = _common.describe_output(
            out.as_numpy(), out.name, out.datatype, out.shape, f"{args.input_npy}.kserve")
    _common.emit(result)


def main(args):
    asyncio.run(run(args))


if __name__ == "__main__":
    _common.run(parse_args, main)
