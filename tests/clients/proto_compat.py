#!/usr/bin/env python3
"""Checks that wasmserve's .proto files are wire- and name-compatible with upstream's.

  proto_compat.py [--proto-root DIR] [--torchserve-protos DIR] [--keep-descriptors FILE]

Compiles every .proto under the proto root (default: the repository's proto/) with
grpc_tools.protoc (include path: the proto root, then grpc_tools' bundled well-known
types) into a FileDescriptorSet, and compares each message, enum and service declared
there with the reference of the same full name:

  - package inference (KServe v2 / Triton): the descriptors embedded in the installed
    tritonclient package (tritonclient.grpc.service_pb2 and model_config_pb2);
  - package google.rpc: googleapis-common-protos' google.rpc.status_pb2;
  - packages org.pytorch.serve.grpc.*: TorchServe's own inference.proto and
    management.proto, found under --torchserve-protos DIR and compiled the same way
    (google/rpc/status.proto comes from googleapis-common-protos). Without the option
    these are not checked ("torchserve_checked": false, and they are in "skipped").
    Without googleapis-common-protos, google.rpc is skipped likewise.

Compared: a message exists upstream under the same full name; each of our fields exists
there with the same number, name, type, label, resolved type_name, oneof (by name),
proto3 `optional`, packed option and, for map entries, the map_entry flag. Enums: the
same value names and numbers, no value missing or extra. Services: each of our methods
exists with the same input/output types and client/server streaming flags. Upstream
fields, nested or top-level messages/enums and methods we do not declare are allowed
and listed in "omitted"; anything of ours that upstream lacks is a mismatch. Prints one
JSON object:

  {"ok", "checked": {"messages", "enums", "services"}, "mismatches": [...],
   "omitted": [...], "torchserve_checked", "skipped": [...], "references": {...}}

Exit 0 when the check ran (even when "ok" is false); 1, with the error on stderr, when
it could not run (protoc failed, a reference could not be loaded, ...).

Needs grpcio-tools, protobuf, tritonclient[grpc] and googleapis-common-protos.
"""

import argparse
import importlib
import os
import sys
import tempfile

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import _common  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_PROTO_ROOT = os.path.join(REPO_ROOT, "proto")

# Where the installed tritonclient keeps the generated descriptors; the first two are
# where 2.73.0 has them, the others are spellings older releases used.
TRITON_MODULES = (
    "tritonclient.grpc.service_pb2",
    "tritonclient.grpc.model_config_pb2",
    "tritonclient.grpc.grpc_service_pb2",
)
TORCHSERVE_FILES = ("inference.proto", "management.proto")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proto-root", default=DEFAULT_PROTO_ROOT,
                   help="root of our .proto files (default: %(default)s)")
    p.add_argument("--torchserve-protos", metavar="DIR",
                   help="folder holding TorchServe's own inference.proto and management.proto"
                        " (searched recursively); without it TorchServe is not checked")
    p.add_argument("--keep-descriptors", metavar="FILE",
                   help="also write our compiled FileDescriptorSet to FILE")
    return p.parse_args()


# --- compiling ------------------------------------------------------------------------

def wkt_include():
    """grpc_tools' bundled well-known types (google/protobuf/*.proto)."""
    try:
        from importlib.resources import files
        path = str(files("grpc_tools") / "_proto")
    except (ImportError, TypeError):  # very old Pythons
        import pkg_resources
        path = pkg_resources.resource_filename("grpc_tools", "_proto")
    if not os.path.isfile(os.path.join(path, "google", "protobuf", "empty.proto")):
        raise RuntimeError(f"grpc_tools' well-known types not found at {path}")
    return path


def compile_protos(include_dirs, files):
    """protoc the files (paths relative to an include dir) into a FileDescriptorSet."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="proto_compat.") as tmp:
        out = os.path.join(tmp, "set.pb")
        argv = ["protoc"] + [f"-I{d}" for d in include_dirs] + [
            f"--descriptor_set_out={out}", "--include_imports"] + list(files)
        rc = protoc.main(argv)
        if rc != 0:
            raise RuntimeError(f"protoc failed (exit {rc}): {' '.join(argv)}")
        with open(out, "rb") as f:
            return descriptor_pb2.FileDescriptorSet.FromString(f.read())


def proto_files_under(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".proto"):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return [p.replace(os.sep, "/") for p in found]


# --- indexing descriptors -------------------------------------------------------------

def index_files(file_protos, source):
    """{full name: (kind, proto, source)} for every message, enum and service, nested
    ones included; kind is "message", "enum" or "service"."""
    idx = {}

    def add(kind, full, proto):
        if full in idx:
            raise RuntimeError(f"{full} is defined twice ({idx[full][2]}, {source})")
        idx[full] = (kind, proto, source)

    def walk_message(prefix, msg):
        full = f"{prefix}.{msg.name}"
        add("message", full, msg)
        for nested in msg.nested_type:
            walk_message(full, nested)
        for enum in msg.enum_type:
            add("enum", f"{full}.{enum.name}", enum)

    for fp in file_protos:
        prefix = f".{fp.package}" if fp.package else ""
        for msg in fp.message_type:
            walk_message(prefix, msg)
        for enum in fp.enum_type:
            add("enum", f"{prefix}.{enum.name}", enum)
        for svc in fp.service:
            add("service", f"{prefix}.{svc.name}", svc)
    return idx


def module_file_proto(module_name):
    from google.protobuf import descriptor_pb2

    mod = importlib.import_module(module_name)
    return descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)


def load_triton():
    protos, used = [], []
    for name in TRITON_MODULES:
        try:
            protos.append(module_file_proto(name))
            used.append(name)
        except ModuleNotFoundError:
            continue
    if not protos:
        raise RuntimeError(f"no tritonclient descriptor module found (tried {TRITON_MODULES})")
    import tritonclient
    version = getattr(tritonclient, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version
        version = dist_version("tritonclient")
    return protos, f"tritonclient {version}: {', '.join(used)}"


def load_googleapis():
    from importlib.metadata import version as dist_version

    fp = module_file_proto("google.rpc.status_pb2")
    return fp, f"googleapis-common-protos {dist_version('googleapis-common-protos')}: google.rpc.status_pb2"


def googleapis_status_source():
    """The text of googleapis-common-protos' google/rpc/status.proto."""
    from importlib.resources import files
    return (files("google.rpc") / "status.proto").read_text(encoding="utf-8")


def load_torchserve(ts_dir, wkt, status_fallback=None):
    """Compile TorchServe's inference.proto and management.proto found under ts_dir.

    Their import google/rpc/status.proto is googleapis' copy, or the file status_fallback
    (ours) when googleapis-common-protos is not installed."""
    ts_dir = os.path.abspath(ts_dir)
    wanted = {}
    for dirpath, dirnames, filenames in os.walk(ts_dir):
        dirnames.sort()
        for name in filenames:
            if name in TORCHSERVE_FILES and name not in wanted:
                wanted[name] = os.path.join(dirpath, name)
    missing = [n for n in TORCHSERVE_FILES if n not in wanted]
    if missing:
        raise RuntimeError(f"--torchserve-protos {ts_dir}: {', '.join(missing)} not found")
    with tempfile.TemporaryDirectory(prefix="proto_compat.gapi.") as gapi:
        # inference.proto imports google/rpc/status.proto: take googleapis' copy.
        os.makedirs(os.path.join(gapi, "google", "rpc"))
        if status_fallback:
            with open(status_fallback, encoding="utf-8") as f:
                text = f.read()
        else:
            text = googleapis_status_source()
        with open(os.path.join(gapi, "google", "rpc", "status.proto"), "w") as f:
            f.write(text)
        includes = sorted({os.path.dirname(p) for p in wanted.values()}) + [wkt, gapi]
        files = []
        for name in TORCHSERVE_FILES:
            path = wanted[name]
            base = next(d for d in includes if os.path.dirname(path) == d)
            files.append(os.path.relpath(path, base))
        fds = compile_protos(includes, files)
    own = [fp for fp in fds.file if os.path.basename(fp.name) in TORCHSERVE_FILES]
    return own, "TorchServe protos: " + ", ".join(wanted[n] for n in TORCHSERVE_FILES)


# --- comparing ------------------------------------------------------------------------

def _label(f):
    from google.protobuf import descriptor_pb2 as d
    return d.FieldDescriptorProto.Label.Name(f.label)


def _type(f):
    from google.protobuf import descriptor_pb2 as d
    t = d.FieldDescriptorProto.Type.Name(f.type)
    return f"{t}({f.type_name})" if f.type_name else t


def _oneof(msg, f):
    if f.HasField("oneof_index"):
        return msg.oneof_decl[f.oneof_index].name
    return None


def _packed(f):
    return f.options.packed if f.options.HasField("packed") else None


def compare_message(full, ours, ref, mismatches, omitted):
    ref_fields = {f.number: f for f in ref.field}
    our_numbers = set()
    if ours.options.map_entry != ref.options.map_entry:
        mismatches.append(f"message {full}: map_entry {ours.options.map_entry}, "
                          f"upstream {ref.options.map_entry}")
    for f in ours.field:
        our_numbers.add(f.number)
        where = f"field {full}.{f.name} = {f.number}"
        r = ref_fields.get(f.number)
        if r is None:
            by_name = [x for x in ref.field if x.name == f.name]
            hint = f" (upstream has {f.name} = {by_name[0].number})" if by_name else ""
            mismatches.append(f"{where}: no field with that number upstream{hint}")
            continue
        checks = [
            ("name", f.name, r.name),
            ("type", _type(f), _type(r)),
            ("label", _label(f), _label(r)),
            ("oneof", _oneof(ours, f), _oneof(ref, r)),
            ("proto3_optional", f.proto3_optional, r.proto3_optional),
            ("packed", _packed(f), _packed(r)),
        ]
        for what, a, b in checks:
            if a != b:
                mismatches.append(f"{where}: {what} {a!r}, upstream {b!r}")
    for r in ref.field:
        if r.number not in our_numbers:
            omitted.append(f"field {full}.{r.name} = {r.number}")
    ours_oneofs = [o.name for o in ours.oneof_decl]
    ref_oneofs = [o.name for o in ref.oneof_decl]
    for name in ours_oneofs:
        if name not in ref_oneofs:
            mismatches.append(f"message {full}: oneof {name} not upstream")


def compare_enum(full, ours, ref, mismatches):
    a = {v.name: v.number for v in ours.value}
    b = {v.name: v.number for v in ref.value}
    for name, num in a.items():
        if name not in b:
            mismatches.append(f"enum {full}: value {name} = {num} not upstream")
        elif b[name] != num:
            mismatches.append(f"enum {full}: value {name} = {num}, upstream {b[name]}")
    for name, num in b.items():
        if name not in a:
            mismatches.append(f"enum {full}: upstream value {name} = {num} missing")


def compare_service(full, ours, ref, mismatches, omitted):
    ref_methods = {m.name: m for m in ref.method}
    our_names = set()
    for m in ours.method:
        our_names.add(m.name)
        where = f"rpc {full}.{m.name}"
        r = ref_methods.get(m.name)
        if r is None:
            mismatches.append(f"{where}: not upstream")
            continue
        for what, a, b in (
            ("input_type", m.input_type, r.input_type),
            ("output_type", m.output_type, r.output_type),
            ("client_streaming", m.client_streaming, r.client_streaming),
            ("server_streaming", m.server_streaming, r.server_streaming),
        ):
            if a != b:
                mismatches.append(f"{where}: {what} {a!r}, upstream {b!r}")
    for name in ref_methods:
        if name not in our_names:
            omitted.append(f"rpc {full}.{name}")


def reference_for(full, refs):
    """The reference index that owns a full name (by package), or None if unchecked."""
    for prefix, idx in refs:
        if full == prefix or full.startswith(prefix + "."):
            return idx
    return None


def main(args):
    wkt = wkt_include()
    proto_root = os.path.abspath(args.proto_root)
    our_files = proto_files_under(proto_root)
    if not our_files:
        raise RuntimeError(f"no .proto files under {proto_root}")
    fds = compile_protos([proto_root, wkt], our_files)
    if args.keep_descriptors:
        with open(args.keep_descriptors, "wb") as f:
            f.write(fds.SerializeToString())
    ours = index_files([fp for fp in fds.file if fp.name in our_files], "ours")

    references = {}
    triton_protos, references["inference"] = load_triton()
    refs = [(".inference", index_files(triton_protos, "triton"))]
    reference_files = {".inference": triton_protos}
    try:
        gapi_proto, references["google.rpc"] = load_googleapis()
    except ModuleNotFoundError:
        gapi_proto = None
        references["google.rpc"] = "googleapis-common-protos not installed: not checked"
    else:
        refs.append((".google.rpc", index_files([gapi_proto], "googleapis")))
        reference_files[".google.rpc"] = [gapi_proto]
    torchserve_checked = False
    if args.torchserve_protos:
        ts_protos, references["org.pytorch.serve.grpc"] = load_torchserve(
            args.torchserve_protos, wkt,
            None if gapi_proto else os.path.join(proto_root, "google", "rpc", "status.proto"))
        refs.append((".org.pytorch.serve.grpc", index_files(ts_protos, "torchserve")))
        reference_files[".org.pytorch.serve.grpc"] = ts_protos
        torchserve_checked = True

    mismatches, omitted, skipped = [], [], []
    checked = {"messages": 0, "enums": 0, "services": 0}
    for full, (kind, proto, _src) in ours.items():
        idx = reference_for(full, refs)
        if idx is None:
            skipped.append(f"{kind} {full[1:]}")
            continue
        ref = idx.get(full)
        if ref is None:
            mismatches.append(f"{kind} {full[1:]}: not upstream")
            continue
        if ref[0] != kind:
            mismatches.append(f"{kind} {full[1:]}: upstream it is a {ref[0]}")
            continue
        checked[kind + "s"] += 1
        if kind == "message":
            compare_message(full[1:], proto, ref[1], mismatches, omitted)
        elif kind == "enum":
            compare_enum(full[1:], proto, ref[1], mismatches)
        else:
            compare_service(full[1:], proto, ref[1], mismatches, omitted)

    # Upstream messages/enums/services (in the packages we check) we do not declare;
    # a nested one is listed only when its parent is declared by us.
    our_packages = {fp.package for fp in fds.file if fp.name in our_files}
    for prefix, idx in refs:
        for full, (kind, _proto, _src) in idx.items():
            pkg_files = reference_files[prefix]
            if not any(full.startswith(f".{fp.package}.") and fp.package in our_packages
                       for fp in pkg_files):
                continue
            if full in ours:
                continue
            parent = full.rsplit(".", 1)[0]
            if parent in idx and parent not in ours:
                continue  # its parent is already listed
            omitted.append(f"{kind} {full[1:]}")

    _common.emit({
        "ok": not mismatches,
        "checked": checked,
        "mismatches": mismatches,
        "omitted": omitted,
        "torchserve_checked": torchserve_checked,
        "skipped": skipped,
        "references": references,
        "proto_root": proto_root,
        "files": our_files,
    })


if __name__ == "__main__":
    _common.run(parse_args, main)
