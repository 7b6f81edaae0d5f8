#!/usr/bin/env python3
"""Writes a single-layer OCI image archive that `ctr images import` accepts.

Used for the cluster's sandbox ("pause") image: no registry is reachable here, so the image is
assembled from a locally compiled binary. Standard library only: it runs before any venv exists.

usage: oci-archive.py OUT.tar IMAGE_REF ENTRYPOINT FILE[:PATH_IN_IMAGE] ...
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _layer(files: list[tuple[str, str]]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for src, dest in files:
            info = layer.gettarinfo(src, arcname=dest.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(src, "rb") as fh:
                layer.addfile(info, fh)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    out, ref, entrypoint, *specs = argv
    files = [(s.split(":", 1)[0], s.split(":", 1)[1] if ":" in s else "/" + s.rsplit("/", 1)[-1]) for s in specs]
    layer, diff_id = _layer(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [entrypoint], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    with tarfile.open(out, "w") as tar:
        layer_desc = _blob(tar, layer, "application/vnd.oci.image.layer.v1.tar+gzip")
        config_desc = _blob(tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = _blob(tar, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": ref,
                                        "io.containerd.image.name": ref}
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        for name, data in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                           ("index.json", {"schemaVersion": 2, "manifests": [manifest_desc]})):
            payload = json.dumps(data).encode()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
