#!/usr/bin/env python3
"""Drives a server with TorchServe's own gRPC API (Python stubs generated from its protos).

  ts_grpc.py --stubs DIR [--inference HOST:PORT] [--management HOST:PORT] [--key KEY]
             [--timeout S] COMMAND ...

DIR is the `torchserve_grpc=` folder that scripts/install-clients.sh prints (or its stubs/
subfolder): inference_pb2(_grpc).py and management_pb2(_grpc).py compiled from TorchServe
0.12.0's inference.proto and management.proto. Run with the clients venv's python. The
global options may also come after COMMAND. --key sends `authorization: Bearer KEY` as
metadata on every call. Commands, each printing one JSON object:

  ping                       InferenceAPIsService.Ping
      {"health": <TorchServeHealthResponse.health, parsed as JSON if it is JSON, else text>}
  predict --model M [--version V] --file F [--input-name data]
                             Predictions, input {input-name: the file's bytes}
      {"prediction", "prediction_json", "sequence_id", "status"?}
  stream  --model M [--version V] --file F [--input-name data]
                             StreamPredictions (one request, a stream of responses)
      {"responses": [{"prediction", "prediction_json", "sequence_id", "status"?, "ms"}],
       "total_ms"}
  stream2 --model M [--version V] --file F [--file F2 ...] [--count N] [--input-name data]
          [--sequence-ids {distinct,same,none}] [--sequence-prefix P] [--close-early]
                             StreamPredictions2: every file, N times over, as PredictionsRequests
                             on ONE bidirectional stream; sequence_id "P-0", "P-1", ... (distinct,
                             the default), "P" on all (same) or unset (none). The request side
                             stays open until as many responses as requests came back (or an
                             error, or the timeout); --close-early half-closes it right after
                             the last request instead.
      {"sent": n, "requests": [{"file", "sequence_id"}], "responses": [{"prediction",
       "prediction_json", "sequence_id", "status"?, "ms"}], "total_ms"}
  manage RPC [--field key=value ...]
                             ManagementAPIsService.RPC (DescribeModel, ListModels,
                             RegisterModel, ScaleWorker, SetDefault, UnregisterModel), the
                             request built from the pairs (values converted to the field's
                             type: int32 -> int, bool -> true/false, string as is)
      {"request": {...}, "msg": <ManagementResponse.msg parsed as JSON if it is JSON, else text>}
  raw --method /package.Service/Method --bytes-hex HEX [--target {inference,management}]
                             the bytes, unchanged, as the request of a unary method (to send
                             a malformed protobuf); the target defaults to management for
                             ManagementAPIsService methods, else inference
      {"method", "sent_bytes", "response_hex", "decoded"?: <as the command above would
       report the response, for the known methods>}

"prediction" is the PredictionResponse.prediction bytes as UTF-8 text ({"base64": ...} when
not UTF-8), "prediction_json" the same parsed as JSON (null if it is not JSON),
"sequence_id" null when unset, "status" ({"code", "message", "details"?: [{"@type", ...}]}) only
when the response has a google.rpc.Status set; "ms" is milliseconds from the start of the
call to that response's arrival.

A call failing with grpc.RpcError is a result, not a failure: the object then has
"error": {"code": "<StatusCode name, e.g. NOT_FOUND>", "details": "<details()>",
"trailing_metadata"?: [[key, value], ...]} (the streaming commands keep the responses that
came before it) and the exit status is 0. Exit 1 only for usage errors and unexpected
exceptions (traceback on stderr).
"""

import argparse
import base64
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree (and the stubs')

import _common  # noqa: E402

MANAGEMENT_RPCS = ("DescribeModel", "ListModels", "RegisterModel", "ScaleWorker",
                   "SetDefault", "UnregisterModel")

# Client-side message size limits: none (the server's own limits are what is tested).
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", -1)]


def _global_options(parser, defaults):
    def d(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--stubs", default=d(None),
                        help="the installer's torchserve_grpc= folder, or its stubs/ subfolder")
    parser.add_argument("--inference", default=d("127.0.0.1:7070"), metavar="HOST:PORT",
                        help="gRPC inference address (default 127.0.0.1:7070)")
    parser.add_argument("--management", default=d("127.0.0.1:7071"), metavar="HOST:PORT",
                        help="gRPC management address (default 127.0.0.1:7071)")
    parser.add_argument("--key", default=d(None),
                        help="send metadata `authorization: Bearer KEY` on every call")
    parser.add_argument("--timeout", type=float, default=d(60.0),
                        help="deadline of each call (a whole stream), seconds (default 60)")
    parser.add_argument("--tls-ca", default=d(None), metavar="PEM",
                        help="speak TLS, trusting this CA certificate (default: plaintext)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(p, defaults=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)

    sub.add_parser("ping", parents=[common], help="InferenceAPIsService.Ping")

    def model_args(sp, many_files=False):
        sp.add_argument("--model", required=True, help="model_name")
        sp.add_argument("--version", default="", help="model_version (default: unset)")
        if many_files:
            sp.add_argument("--file", action="append", required=True,
                            help="file whose bytes are the input (repeatable: one request each)")
        else:
            sp.add_argument("--file", help="file whose bytes are the input")
            sp.add_argument("--part", action="append", default=[], metavar="NAME=FILE",
                            help="an entry of the input map (repeatable; instead of --file)")
        sp.add_argument("--input-name", default="data", help="key in the input map (default data)")

    model_args(sub.add_parser("predict", parents=[common], help="Predictions"))
    model_args(sub.add_parser("stream", parents=[common], help="StreamPredictions"))
    s2 = sub.add_parser("stream2", parents=[common], help="StreamPredictions2 (bidirectional)")
    model_args(s2, many_files=True)
    s2.add_argument("--count", type=int, default=1,
                    help="send the list of files this many times (default 1)")
    s2.add_argument("--sequence-ids", choices=("distinct", "same", "none"), default="distinct",
                    help="sequence_id per request: PREFIX-i (default), PREFIX on all, or unset")
    s2.add_argument("--sequence-prefix", default="seq", help="sequence_id prefix (default seq)")
    s2.add_argument("--close-early", action="store_true",
                    help="half-close the request stream right after the last request")

    m = sub.add_parser("manage", parents=[common], help="ManagementAPIsService.RPC")
    m.add_argument("rpc", metavar="RPC", choices=MANAGEMENT_RPCS,
                   help=", ".join(MANAGEMENT_RPCS))
    m.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                   help="a request field (repeatable), e.g. model_name=mnist")

    r = sub.add_parser("raw", parents=[common], help="arbitrary bytes to a unary method")
    r.add_argument("--method", required=True, help="/package.Service/Method")
    r.add_argument("--bytes-hex", required=True, help="the request body, hex ('' for empty)")
    r.add_argument("--target", choices=("inference", "management"),
                   help="which address (default: from the service name)")

    args = p.parse_args()
    if not args.stubs:
        p.error("--stubs DIR is required (the installer's torchserve_grpc= line)")
    if args.command == "stream2" and args.count < 1:
        p.error("--count must be at least 1")
    return args


def load_stubs(path):
    stubs = os.path.join(path, "stubs")
    if not os.path.isfile(os.path.join(path, "inference_pb2.py")) and os.path.isdir(stubs):
        path = stubs
    if not os.path.isfile(os.path.join(path, "inference_pb2.py")):
        _common.fail(f"no inference_pb2.py in {path} (pass the installer's torchserve_grpc= dir)")
    sys.path.insert(0, os.path.abspath(path))
    import inference_pb2
    import inference_pb2_grpc
    import management_pb2
    import management_pb2_grpc
    return inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc


def text_or_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def rpc_error(e):
    err = {"code": None, "details": None}
    code = getattr(e, "code", None)
    if callable(code):
        c = code()
        err["code"] = getattr(c, "name", str(c))
    details = getattr(e, "details", None)
    if callable(details):
        err["details"] = details()
    trailing = getattr(e, "trailing_metadata", None)
    if callable(trailing):
        md = trailing() or ()
        if md:
            err["trailing_metadata"] = [[k, _common.decode_bytes_element(v)] for k, v in md]
    return err


def prediction(resp):
    entry = {"prediction": _common.decode_bytes_element(resp.prediction), "prediction_json": None}
    try:
        entry["prediction_json"] = json.loads(resp.prediction.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass
    entry["sequence_id"] = resp.sequence_id if resp.HasField("sequence_id") else None
    if resp.HasField("status"):
        st = {"code": resp.status.code, "message": resp.status.message}
        if resp.status.details:
            st["details"] = [any_detail(d) for d in resp.status.details]
        entry["status"] = st
    return entry


def any_detail(any_msg):
    """A google.protobuf.Any from Status.details: {"@type", fields...} when it is one of the
    google.rpc error detail messages (ErrorInfo, ...), else {"@type", "value_base64"}."""
    from google.protobuf.json_format import MessageToDict
    from google.rpc import error_details_pb2  # noqa: F401 - registers the detail types

    try:
        return MessageToDict(any_msg, preserving_proto_field_name=True)
    except Exception:  # noqa: BLE001 - a type this process does not know
        return {"@type": any_msg.type_url,
                "value_base64": base64.b64encode(any_msg.value).decode("ascii")}


def main(args):
    import grpc
    from google.protobuf import empty_pb2

    inf_pb2, inf_grpc, mgmt_pb2, mgmt_grpc = load_stubs(args.stubs)
    metadata = [("authorization", f"Bearer {args.key}")] if args.key is not None else None
    call = {"timeout": args.timeout, "metadata": metadata}

    def channel(addr):
        if args.tls_ca:
            with open(args.tls_ca, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            return grpc.secure_channel(addr, creds, options=CHANNEL_OPTIONS)
        return grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def request(fname, seq=None):
        parts = {}
        for spec in getattr(args, "part", None) or []:
            name, _, path = spec.partition("=")
            parts[name] = read(path)
        if fname is not None:
            parts[args.input_name] = read(fname)
        if not parts:
            _common.fail("give --file or --part NAME=FILE")
        req = inf_pb2.PredictionsRequest(model_name=args.model, input=parts)
        if args.version:
            req.model_version = args.version
        if seq is not None:
            req.sequence_id = seq
        return req

    result = {}
    cmd = args.command
    target = args.management if cmd == "manage" else args.inference
    if cmd == "raw":
        target = {"inference": args.inference, "management": args.management}[
            args.target or ("management" if "ManagementAPIsService" in args.method
                            else "inference")]
    with channel(target) as ch:
        try:
            if cmd == "ping":
                resp = inf_grpc.InferenceAPIsServiceStub(ch).Ping(empty_pb2.Empty(), **call)
                result["health"] = text_or_json(resp.health)

            elif cmd == "predict":
                resp = inf_grpc.InferenceAPIsServiceStub(ch).Predictions(
                    request(args.file), **call)
                result.update(prediction(resp))

            elif cmd == "stream":
                result["responses"] = []
                t0 = time.monotonic()
                try:
                    for resp in inf_grpc.InferenceAPIsServiceStub(ch).StreamPredictions(
                            request(args.file), **call):
                        entry = prediction(resp)
                        entry["ms"] = round((time.monotonic() - t0) * 1000, 3)
                        result["responses"].append(entry)
                finally:
                    result["total_ms"] = round((time.monotonic() - t0) * 1000, 3)

            elif cmd == "stream2":
                stream2(args, inf_pb2, inf_grpc, ch, call, request, result)

            elif cmd == "manage":
                req = build_request(getattr(mgmt_pb2, f"{args.rpc}Request"), args.field)
                from google.protobuf.json_format import MessageToDict
                result["request"] = MessageToDict(req, preserving_proto_field_name=True)
                resp = getattr(mgmt_grpc.ManagementAPIsServiceStub(ch), args.rpc)(req, **call)
                result["msg"] = text_or_json(resp.msg)

            elif cmd == "raw":
                try:
                    body = bytes.fromhex(args.bytes_hex)
                except ValueError as e:
                    _common.fail(f"--bytes-hex: {e}")
                result.update({"method": args.method, "target": target, "sent_bytes": len(body)})
                fn = ch.unary_unary(args.method, request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
                raw = fn(body, **call)
                result["response_hex"] = raw.hex()
                decoded = decode_known(args.method, raw, inf_pb2, mgmt_pb2)
                if decoded is not None:
                    result["decoded"] = decoded
        except grpc.RpcError as e:
            result["error"] = rpc_error(e)
    _common.emit(result)


def stream2(args, inf_pb2, inf_grpc, ch, call, request, result):
    reqs, plan = [], []
    for rep in range(args.count):
        for fname in args.file:
            i = len(reqs)
            seq = {"distinct": f"{args.sequence_prefix}-{i}", "same": args.sequence_prefix,
                   "none": None}[args.sequence_ids]
            reqs.append(request(fname, seq))
            plan.append({"file": fname, "sequence_id": seq})
    result["sent"] = 0
    result["requests"] = plan
    result["responses"] = []
    done = threading.Event()
    received = [0]

    def requests():
        for req in reqs:
            yield req
            result["sent"] += 1
        if not args.close_early:
            done.wait(args.timeout)  # keep the request side open until all came back

    t0 = time.monotonic()
    responses = inf_grpc.InferenceAPIsServiceStub(ch).StreamPredictions2(requests(), **call)
    try:
        for resp in responses:
            entry = prediction(resp)
            entry["ms"] = round((time.monotonic() - t0) * 1000, 3)
            result["responses"].append(entry)
            received[0] += 1
            if received[0] >= len(reqs):
                done.set()
    finally:
        done.set()
        result["total_ms"] = round((time.monotonic() - t0) * 1000, 3)


def build_request(cls, pairs):
    from google.protobuf.descriptor import FieldDescriptor as FD

    req = cls()
    fields = cls.DESCRIPTOR.fields_by_name
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            _common.fail(f"--field {pair!r}: expected KEY=VALUE")
        fd = fields.get(key)
        if fd is None:
            _common.fail(f"{cls.DESCRIPTOR.name} has no field {key!r} "
                         f"(fields: {', '.join(fields)})")
        try:
            if fd.type == FD.TYPE_BOOL:
                v = _common.bool_arg(value)
            elif fd.type in (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64,
                             FD.TYPE_SINT32, FD.TYPE_SINT64):
                v = int(value, 0)
            elif fd.type == FD.TYPE_STRING:
                v = value
            elif fd.type == FD.TYPE_BYTES:
                v = value.encode()
            else:
                _common.fail(f"field {key!r} has an unsupported type {fd.type}")
        except ValueError as e:
            _common.fail(f"--field {pair!r}: {e}")
        setattr(req, key, v)
    return req


def decode_known(method, raw, inf_pb2, mgmt_pb2):
    """The response of a known method as the matching command reports it, else None."""
    from google.protobuf.message import DecodeError

    name = method.rsplit("/", 1)[-1]
    try:
        if method.endswith("InferenceAPIsService/Ping"):
            return {"health": text_or_json(inf_pb2.TorchServeHealthResponse.FromString(raw).health)}
        if method.endswith("InferenceAPIsService/Predictions"):
            return prediction(inf_pb2.PredictionResponse.FromString(raw))
        if "ManagementAPIsService/" in method and name in MANAGEMENT_RPCS:
            return {"msg": text_or_json(mgmt_pb2.ManagementResponse.FromString(raw).msg)}
    except DecodeError as e:
        return {"decode_error": str(e)}
    return None


if __name__ == "__main__":
    _common.run(parse_args, main)
