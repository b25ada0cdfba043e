#!/usr/bin/env python3
"""Makes the hand-written seeds of the fuzz targets (fuzz/seeds/<target>/).

The archives a real server writes (default.zip, store.zip, withconfig.zip: `.mar` files are
git-ignored, so the seeds are named `.zip`) come from
`wasmserve archive`; pass the binary to make them too:

    python3 fuzz/seeds/make_seeds.py [target/release/wasmserve]
"""
import io, json, os, stat, subprocess, sys, tempfile, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHIVE = os.path.join(HERE, "archive")
BODY = os.path.join(HERE, "request_body")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def zip_file(name, entries, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(os.path.join(ARCHIVE, name), "w", method) as zf:
        for n, data in entries:
            zf.writestr(n, data)


def archives():
    os.makedirs(ARCHIVE, exist_ok=True)
    man = {"runtime": "wasm", "model": {"modelName": "evil", "modelVersion": "1.0",
                                        "serializedFile": "model.pt", "handler": "base_handler"}}
    mj = json.dumps(man)
    # Entries that escape: `..`, `..` deeper than the tree, an absolute path.
    zip_file("dotdot.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", "x"), ("../escape.txt", "pwned")])
    zip_file("dotdot-deep.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", "x"),
                                 ("a/../../../../escape.txt", "pwned")])
    zip_file("absolute.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", "x"), ("/tmp/escape.txt", "pwned")])
    # A symlink entry (unix mode S_IFLNK).
    with zipfile.ZipFile(os.path.join(ARCHIVE, "symlink.zip"), "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", mj)
        info = zipfile.ZipInfo("model.pt")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    # TorchServe-style manifest, directory entries, a nested file, a .wasm handler.
    ts = {"createdOn": "01/01/2024 00:00:00", "runtime": "python",
          "model": {"modelName": "ts", "modelVersion": "1.0", "serializedFile": "model.pt",
                    "handler": "handler.wasm", "modelFile": "model.py",
                    "requirementsFile": "requirements.txt", "configFile": "model-config.yaml"},
          "archiverVersion": "0.9.0"}
    with zipfile.ZipFile(os.path.join(ARCHIVE, "dirs.zip"), "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/", "")
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps(ts))
        zf.writestr("model.pt", "x")
        zf.writestr("handler.wasm", b"\0asm\x0d\0\x01\0")
        zf.writestr("model-config.yaml", "batchSize: 1\n")
        zf.writestr("extra/dir/file.txt", "nested")
    # The manifest names a file outside the archive, or one that is missing.
    m2 = json.loads(mj); m2["model"]["serializedFile"] = "../model.pt"
    zip_file("member-escape.zip", [("MAR-INF/MANIFEST.json", json.dumps(m2)), ("model.pt", "x")])
    m3 = json.loads(mj); m3["model"]["handler"] = "missing.wasm"
    zip_file("missing-handler.zip", [("MAR-INF/MANIFEST.json", json.dumps(m3)), ("model.pt", "x")])
    # No manifest; an invalid one.
    zip_file("no-manifest.zip", [("model.pt", "x")])
    zip_file("bad-manifest.zip", [("MAR-INF/MANIFEST.json",
                                   '{"runtime":"wasm","model":{"modelName":"-bad","modelVersion":""}}')],
             zipfile.ZIP_STORED)
    # More entries than the fuzz target's limit (64).
    zip_file("many.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", "x")] +
             [(f"f{i}", "") for i in range(70)], zipfile.ZIP_STORED)
    # Inflates past the fuzz target's limit (8 MiB).
    zip_file("bomb.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", b"\0" * (9 << 20))])
    # A file and a directory of the same name.
    zip_file("clash.zip", [("MAR-INF/MANIFEST.json", mj), ("model.pt", "x"), ("model.pt/inner", "y")])
    # The manifest alone, as text (parse_manifest).
    write(os.path.join(ARCHIVE, "manifest.json"), json.dumps(ts, indent=2))


def server_archives(wasmserve):
    with tempfile.TemporaryDirectory() as d:
        write(os.path.join(d, "model.pt"), "tiny torchscript stand-in\n")
        write(os.path.join(d, "model-config.yaml"), "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n")
        write(os.path.join(d, "index_to_name.json"), '{"0":"cat","1":"dog"}')
        runs = [
            ("default.zip", "tiny", ["--handler", "base_handler"]),
            ("store.zip", "tiny", ["--handler", "base_handler", "--archive-format", "zip-store"]),
            ("withconfig.zip", "tiny-cfg", ["--handler", "image_classifier", "-c", "model-config.yaml",
                                            "--extra-files", "index_to_name.json"]),
        ]
        for out, name, extra in runs:
            subprocess.run([wasmserve, "archive", "--model-name", name, "--version", "1.0",
                            "--serialized-file", "model.pt", "--export-path", ".", "-f"] + extra,
                           cwd=d, check=True)
            os.replace(os.path.join(d, name + ".mar"), os.path.join(ARCHIVE, out))


def bodies():
    """The first byte picks the content type (see fuzz_targets/request_body.rs):
    '0' multipart with boundary `fuzzboundary`, '1' the header value up to the first
    newline, '2' url-encoded form, '3' json, '4' text, '5' no header."""
    os.makedirs(BODY, exist_ok=True)
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    b = b"--fuzzboundary\r\n"
    one = (b + b'Content-Disposition: form-data; name="data"; filename="kitten.jpg"\r\n'
           b"Content-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n--fuzzboundary--\r\n")
    write(os.path.join(BODY, "multipart-file"), b"0" + one)
    two = (b + b'Content-Disposition: form-data; name="data"\r\n\r\nhello world\r\n' +
           b + b'Content-Disposition: form-data; name="body"; filename="x.bin"\r\n'
           b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--\r\n" +
           b + b'Content-Disposition: form-data; name="caf\xc3\xa9"\r\n\r\n\r\n--fuzzboundary--\r\n')
    write(os.path.join(BODY, "multipart-fields"), b"0" + two)
    write(os.path.join(BODY, "multipart-noname"), b"0" + b + b"Content-Type: text/plain\r\n\r\nanonymous\r\n--fuzzboundary--")
    write(os.path.join(BODY, "multipart-header-quoted"),
          b'1multipart/form-data; boundary="a b:c"\n--a b:c\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--a b:c--\r\n')
    write(os.path.join(BODY, "multipart-header-case"),
          b"1Multipart/Form-Data; charset=utf-8; boundary=XyZ\n--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nv\r\n--XyZ--\r\n")
    write(os.path.join(BODY, "multipart-header-noboundary"), b"1multipart/form-data\n--x\r\n\r\n--x--")
    write(os.path.join(BODY, "json-header-charset"), b'1application/json; charset=utf-8\n{"instances": [[1.0, 2.0]]}')
    write(os.path.join(BODY, "form"), b"2data=hello&x=%E2%82%AC+y&empty=&novalue&%ZZ=bad%")
    write(os.path.join(BODY, "json"), b'3{"instances": [{"data": [0.1, 0.2, 0.3]}], "parameters": {}}')
    write(os.path.join(BODY, "text"), b"4Bloomberg has decided to publish a new report on global economic situation.")
    write(os.path.join(BODY, "raw"), b"5" + jpeg)


if __name__ == "__main__":
    archives()
    bodies()
    if len(sys.argv) > 1:
        server_archives(sys.argv[1])
