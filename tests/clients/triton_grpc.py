#!/usr/bin/env python3
"""Drives a server with Triton's own gRPC client (tritonclient.grpc) and reports what came back.

  triton_grpc.py --url 127.0.0.1:PORT --model NAME [--version V]
                 (--input-npy FILE --input-name NAME [--datatype FP32] | --bytes-file F
                  [--input-name data]) [--output NAME ...] [--stream N] [--no-probes]
  triton_grpc.py --url 127.0.0.1:PORT --model NAME --errors [--missing no_such_model]

Without --errors: is_server_live, is_server_ready, is_model_ready,
get_server_metadata(as_json=True), get_model_metadata(as_json=True),
get_model_config(as_json=True) (skipped with --no-probes), then the inference: one infer, or
with --stream N a bidirectional ModelStreamInfer stream (start_stream(callback), N
async_stream_infer calls of the same request with request_id "0".."N-1", waiting up to
--timeout for N results or errors, then stop_stream). The input is the .npy
(set_data_from_numpy: raw_input_contents, tritonclient's only way) or, with --bytes-file,
one BYTES [1] element holding the file. With --output, each is requested as
InferRequestedOutput(name); without, none is requested (the server sends all). Prints:

  {"live", "ready", "model_ready", "server_metadata", "model_metadata", "model_config",
   "request": {...what was sent...},
   "response": <ModelInferResponse as JSON, raw_output_contents replaced by their sizes
                ("raw_output_contents_bytes")>,
   "outputs": {NAME: {"name", "datatype", "shape", "binary", "npy", "npy_dtype",
                      "numpy_shape", "data"?}}}
  with --stream N, instead of "response"/"outputs":
   "stream": {"sent", "results": [{"ms", "request_id", "response", "outputs"} or
              {"ms", "error": {"status", "message", "stream_error"}}], "timed_out",
              "total_ms"}

The metadata JSON is the client's (protobuf JSON: int64 values such as shapes are strings).
"binary" says whether the output came in raw_output_contents (as_numpy reads only those and
bytes_contents). Numeric outputs of the .npy input are saved as <npy>.grpc.out.<NAME>.npy
(stream result i: <npy>.grpc.stream<i>.out.<NAME>.npy; for --bytes-file only with --out-dir
DIR, as DIR/<file name>.grpc.out.<NAME>.npy); "data" (the flattened values) is there for
tensors of at most 65536 elements, BYTES as UTF-8 strings ({"base64": ...} if not UTF-8).
Results are in arrival order; "ms" counts from start_stream. "stream_error" is true for an
error that ended the stream (a gRPC status) and false for a ModelStreamInferResponse
error_message. Exit 0 when every call returned (stream results may be errors); 1, with the
error on stderr, if a call raised (its InferenceServerException status and message).

--errors instead runs calls that should fail and reports each InferenceServerException:
  model_ready_missing (is_model_ready(MISSING): a bool), model_metadata_missing,
  model_config_missing, infer_missing (one FP32 [1] input named "input"), infer_bad_input
  (NAME with an input "no_such_input", datatype from its first metadata input, else FP32)
  {CASE: {"raised": true, "status": "StatusCode.NOT_FOUND", "message", "debug_details"}}
  or {"raised": false, "result": ...}; exit 0 whenever the cases ran.
"""

import argparse
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="host:port, no scheme (tritonclient's form)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="", help="model version (default: the server's choice)")
    p.add_argument("--input-npy", help=".npy file holding the input tensor")
    p.add_argument("--bytes-file", help="file whose bytes make one BYTES [1] element")
    p.add_argument("--input-name", help="input name (default data with --bytes-file)")
    p.add_argument("--datatype", default="FP32", help="KServe v2 datatype of --input-npy (FP32)")
    p.add_argument("--output", action="append", default=[],
                   help="requested output name (repeatable; default: none requested)")
    p.add_argument("--stream", type=int, metavar="N",
                   help="N async_stream_infer calls on one ModelStreamInfer stream")
    p.add_argument("--no-probes", action="store_true",
                   help="skip live/ready/metadata/config, only the inference")
    p.add_argument("--out-dir", help="with --bytes-file: write numeric outputs as .npy here")
    p.add_argument("--errors", action="store_true", help="run the error cases instead")
    p.add_argument("--missing", default="no_such_model", help="a model name the server lacks")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="deadline of each call, and of the whole stream, seconds")
    args = p.parse_args()
    if not args.errors:
        if bool(args.input_npy) == bool(args.bytes_file):
            p.error("give exactly one of --input-npy and --bytes-file (or --errors)")
        if args.input_npy and not args.input_name:
            p.error("--input-npy needs --input-name")
        if args.stream is not None and args.stream < 1:
            p.error("--stream N needs N >= 1")
    if args.bytes_file and not args.input_name:
        args.input_name = "data"
    return args


def response_json(resp):
    """A ModelInferResponse as tritonclient's as_json gives it, minus the raw bytes."""
    from google.protobuf.json_format import MessageToDict

    sizes = [len(b) for b in resp.raw_output_contents]
    copy = type(resp)()
    copy.CopyFrom(resp)
    del copy.raw_output_contents[:]
    out = MessageToDict(copy, preserving_proto_field_name=True)
    if sizes:
        out["raw_output_contents_bytes"] = sizes
    return out


def describe_result(res, npy_prefix):
    resp = res.get_response()
    outputs = {}
    for i, out in enumerate(resp.outputs):
        binary = i < len(resp.raw_output_contents)
        try:
            arr = res.as_numpy(out.name)
        except Exception as e:  # noqa: BLE001 - e.g. typed contents: as_numpy cannot reshape
            arr = None
            print(f"triton_grpc.py: as_numpy({out.name}) failed: {e}", file=sys.stderr)
        entry = _common.describe_output(arr, out.name, out.datatype, list(out.shape),
                                        npy_prefix, binary=binary)
        if arr is None:
            entry["as_numpy"] = None
        outputs[out.name] = entry
    return response_json(resp), outputs


def exc(e):
    return {"status": e.status(), "message": e.message()}


def run_errors(args, client, grpcclient, InferenceServerException):
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    def case(fn):
        try:
            value = fn()
        except InferenceServerException as e:
            return {"raised": True, "status": e.status(), "message": e.message(),
                    "debug_details": e.debug_details()}
        if hasattr(value, "get_response"):
            value = response_json(value.get_response())
        return {"raised": False, "result": value}

    def fp32_input(name):
        inp = grpcclient.InferInput(name, [1], "FP32")
        inp.set_data_from_numpy(np.zeros([1], dtype=np.float32))
        return inp

    def bad_input():
        datatype = "FP32"
        try:
            meta = client.get_model_metadata(args.model, args.version, as_json=True,
                                             client_timeout=args.timeout)
            inputs = meta.get("inputs") or []
            if inputs and inputs[0].get("datatype"):
                datatype = inputs[0]["datatype"]
        except InferenceServerException as e:
            print(f"triton_grpc.py: get_model_metadata({args.model}) failed "
                  f"({e.status()}: {e.message()}); using FP32", file=sys.stderr)
        inp = grpcclient.InferInput("no_such_input", [1], datatype)
        if datatype == "BYTES":
            data = np.array([b"x"], dtype=np.object_)
        else:
            data = np.zeros([1], dtype=triton_to_np_dtype(datatype) or np.float32)
        inp.set_data_from_numpy(data)
        return client.infer(args.model, [inp], model_version=args.version,
                            client_timeout=args.timeout)

    t = args.timeout
    result = {}
    result["model_ready_missing"] = case(
        lambda: client.is_model_ready(args.missing, client_timeout=t))
    if not result["model_ready_missing"]["raised"]:
        result["model_ready_missing"] = {"result": result["model_ready_missing"]["result"]}
    result["model_metadata_missing"] = case(
        lambda: client.get_model_metadata(args.missing, as_json=True, client_timeout=t))
    result["model_config_missing"] = case(
        lambda: client.get_model_config(args.missing, as_json=True, client_timeout=t))
    result["infer_missing"] = case(
        lambda: client.infer(args.missing, [fp32_input("input")], client_timeout=t))
    result["infer_bad_input"] = case(bad_input)
    return result


def main(args):
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    client = grpcclient.InferenceServerClient(url=args.url)
    t = args.timeout
    try:
        if args.errors:
            _common.emit(run_errors(args, client, grpcclient, InferenceServerException))
            return

        if args.input_npy:
            arr = np.load(args.input_npy, allow_pickle=args.datatype == "BYTES")
            want = triton_to_np_dtype(args.datatype)
            if args.datatype != "BYTES" and want is not None and arr.dtype != want:
                print(f"triton_grpc.py: casting input from {arr.dtype} to {np.dtype(want)}",
                      file=sys.stderr)
                arr = arr.astype(want)
            datatype = args.datatype
            npy_prefix = f"{args.input_npy}.grpc"
            sent = {"input_npy": args.input_npy}
        else:
            with open(args.bytes_file, "rb") as f:
                payload = f.read()
            arr = np.array([payload], dtype=np.object_)
            datatype = "BYTES"
            npy_prefix = None
            if args.out_dir:
                os.makedirs(args.out_dir, exist_ok=True)
                npy_prefix = os.path.join(args.out_dir, os.path.basename(args.bytes_file)) + ".grpc"
            sent = {"bytes_file": args.bytes_file, "file_bytes": len(payload)}

        def inputs():
            inp = grpcclient.InferInput(args.input_name, list(arr.shape), datatype)
            inp.set_data_from_numpy(arr)
            return [inp]

        def outputs():
            return [grpcclient.InferRequestedOutput(n) for n in args.output] or None

        result = {}
        step = "connect"
        try:
            if not args.no_probes:
                step = "is_server_live"
                result["live"] = client.is_server_live(client_timeout=t)
                step = "is_server_ready"
                result["ready"] = client.is_server_ready(client_timeout=t)
                step = "is_model_ready"
                result["model_ready"] = client.is_model_ready(args.model, args.version,
                                                              client_timeout=t)
                step = "get_server_metadata"
                result["server_metadata"] = client.get_server_metadata(as_json=True,
                                                                       client_timeout=t)
                step = "get_model_metadata"
                result["model_metadata"] = client.get_model_metadata(
                    args.model, args.version, as_json=True, client_timeout=t)
                step = "get_model_config"
                result["model_config"] = client.get_model_config(
                    args.model, args.version, as_json=True, client_timeout=t)

            result["request"] = dict(
                model=args.model, version=args.version, input_name=args.input_name,
                datatype=datatype, shape=list(arr.shape), outputs=args.output, **sent)
            if args.stream is None:
                step = "infer"
                res = client.infer(args.model, inputs(), model_version=args.version,
                                   outputs=outputs(), client_timeout=t)
                result["response"], result["outputs"] = describe_result(res, npy_prefix)
            else:
                step = "stream"
                result["stream"] = run_stream(args, client, inputs, outputs, npy_prefix)
        except InferenceServerException as e:
            _common.fail(f"{step} failed: status={e.status()} message={e.message()}"
                         f"{' debug=' + str(e.debug_details()) if e.debug_details() else ''}")
        _common.emit(result)
    finally:
        client.close()


def run_stream(args, client, inputs, outputs, npy_prefix):
    n = args.stream
    results = []
    lock = threading.Lock()
    finished = threading.Event()
    stream_dead = threading.Event()
    t0 = time.monotonic()

    def callback(result, error):
        ms = round((time.monotonic() - t0) * 1000, 3)
        if error is not None:
            # An error_message in a ModelStreamInferResponse has no status; a gRPC error
            # that ended the stream has "StatusCode.X".
            entry = {"ms": ms, "error": {**exc(error), "stream_error": error.status() is not None}}
            if error.status() is not None:
                stream_dead.set()
        else:
            entry = {"ms": ms, "result": result}
        with lock:
            results.append(entry)
            if len(results) >= n or stream_dead.is_set():
                finished.set()

    client.start_stream(callback, stream_timeout=args.timeout)
    sent = 0
    try:
        for i in range(n):
            if stream_dead.is_set():
                break
            client.async_stream_infer(args.model, inputs(), model_version=args.version,
                                      outputs=outputs(), request_id=str(i))
            sent += 1
        timed_out = not finished.wait(args.timeout)
    finally:
        # Half-close and wait for the server to end the stream (bounded by stream_timeout);
        # cancel instead when the results did not all come back.
        client.stop_stream(cancel_requests=not finished.is_set())
    total_ms = round((time.monotonic() - t0) * 1000, 3)

    out = []
    with lock:
        entries = list(results)
    for k, entry in enumerate(entries):
        res = entry.pop("result", None)
        if res is not None:
            resp = res.get_response()
            prefix = npy_prefix and f"{npy_prefix}.stream{k}"
            entry["request_id"] = resp.id
            entry["response"], entry["outputs"] = describe_result(res, prefix)
        out.append(entry)
    return {"sent": sent, "results": out, "timed_out": timed_out, "total_ms": total_ms}


if __name__ == "__main__":
    _common.run(parse_args, main)
