#!/usr/bin/env python3
"""Adds the optional platform builds of msgpackr-extract that npm could not fetch to
package-lock.json, so that `npm ci` accepts the lock file. npm installs only the build whose
os/cpu match the host, so these entries are never downloaded here. Idempotent."""
import json
import pathlib

lock_path = pathlib.Path(__file__).resolve().parent.parent / "package-lock.json"
lock = json.loads(lock_path.read_text())
packages = lock["packages"]
prefix = "node_modules/@msgpackr-extract/msgpackr-extract-"
template = next(v for k, v in packages.items() if k.startswith(prefix))
platforms = {"darwin-arm64": ("darwin", "arm64"), "darwin-x64": ("darwin", "x64"), "linux-arm": ("linux", "arm"),
             "linux-arm64": ("linux", "arm64"), "linux-x64": ("linux", "x64"), "win32-x64": ("win32", "x64")}
for name, (os_name, cpu) in platforms.items():
    key = prefix + name
    if key not in packages:
        packages[key] = {"version": template["version"], "cpu": [cpu], "license": template.get("license", "MIT"),
                         "optional": True, "os": [os_name]}
lock["packages"] = dict(sorted(packages.items()))
lock_path.write_text(json.dumps(lock, indent=2) + "\n")
