#!/usr/bin/env python3
"""Fails when a locked dependency of the library declares a newer `rust-version` than the crate.

The library's dependencies are its normal and build dependencies with every feature on, as
`cargo tree` resolves them from Cargo.lock; dev-dependencies and the benchmarks' workspace member
are tooling and may need a newer toolchain (the README says so). A dependency that declares no
`rust-version` cannot be checked and is listed, not failed.
"""
import json
import subprocess
import sys

CRATE = "stopover"


def version_tuple(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def cargo(*args):
    return subprocess.run(["cargo", *args], check=True, capture_output=True, text=True).stdout


def main():
    metadata = json.loads(cargo("metadata", "--format-version", "1", "--all-features", "--locked"))
    by_id = {(p["name"], p["version"]): p for p in metadata["packages"]}
    crate = next(p for p in metadata["packages"] if p["name"] == CRATE and p["source"] is None)
    declared = crate.get("rust_version")
    if not declared:
        sys.exit(f"{CRATE} declares no rust-version in Cargo.toml")

    tree = cargo("tree", "--locked", "-p", CRATE, "--all-features", "-e", "normal,build",
                 "--prefix", "none", "--format", "{p}")
    deps = set()
    for line in tree.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].startswith("v") and fields[0] != CRATE:
            deps.add((fields[0], fields[1][1:]))

    newer, unknown, highest = [], [], ("(none)", "0")
    for name, version in sorted(deps):
        needed = by_id[(name, version)].get("rust_version")
        if needed is None:
            unknown.append(f"{name} {version}")
            continue
        if version_tuple(needed) > version_tuple(highest[1]):
            highest = (f"{name} {version}", needed)
        if version_tuple(needed) > version_tuple(declared):
            newer.append(f"{name} {version} needs Rust {needed}")

    print(f"{CRATE} declares rust-version {declared}; {len(deps)} locked library dependencies; "
          f"the highest need is Rust {highest[1]} ({highest[0]})")
    if unknown:
        print("declaring no rust-version (not checked): " + ", ".join(unknown))
    if newer:
        print(f"these need a newer Rust than the crate's rust-version {declared}:")
        for line in newer:
            print("  " + line)
        sys.exit(1)


if __name__ == "__main__":
    main()
