"""Driver of the corruption campaign (run by tests/test_fuzz.py in a child process).

Each case corrupts one fixture image at random (seeded) in one way — MFT records,
index blocks, boot sectors, GPT/MBR, BitLocker metadata, E01 sections, truncation —
then runs ``info``, ``ls -r``, ``collect`` and ``verify`` on it in-process (typer's
CliRunner) and prints one JSON line per case with what each command did. The test
checks the invariants; this script only reports. A command that does not finish in
``--case-timeout`` seconds ends the process with a dump of every thread
(faulthandler), which the test reports as a hang.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import random
import shutil
import sys
import time
import traceback
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from selective_imager.cli.app import app

SECTOR = 512


def _mft_offset(data: bytes | bytearray, volume: int) -> int:
    boot = data[volume : volume + SECTOR]
    cluster = int.from_bytes(boot[0x0B:0x0D], "little") * boot[0x0D]
    return volume + int.from_bytes(boot[0x30:0x38], "little") * cluster


def _scribble(data: bytearray, rng: random.Random, lo: int, hi: int, most: int = 64) -> str:
    """Overwrite a random run of up to ``most`` bytes inside ``[lo, hi)``."""
    hi = min(hi, len(data))
    if hi - lo < 2:
        return "nothing to corrupt"
    at = rng.randrange(lo, hi - 1)
    n = rng.randint(1, min(most, hi - at))
    how = rng.choice(["random", "zeros", "ones"])
    fill = {"random": bytes(rng.randrange(256) for _ in range(n)), "zeros": bytes(n),
            "ones": b"\xff" * n}[how]
    data[at : at + n] = fill
    return f"{n} {how} bytes at {at}"


def corrupt(kind: str, image: bytes, rng: random.Random, volume: int, extra: dict) -> tuple[bytes, str]:
    """One corruption of ``image``; returns the bytes and what was done."""
    data = bytearray(image)
    if kind == "mft-record":
        mft = _mft_offset(data, volume)
        entry = rng.choice(extra.get("mft_entries") or range(96))
        what = _scribble(data, rng, mft + entry * 1024, mft + entry * 1024 + 1024)
        return bytes(data), f"MFT record {entry}: {what}"
    if kind == "index-block":
        blocks = [o for o in range(volume, len(data) - 4, 4096) if data[o : o + 4] == b"INDX"]
        if not blocks:
            return bytes(data), "no INDX block"
        at = rng.choice(blocks)
        return bytes(data), f"INDX block at {at}: {_scribble(data, rng, at, at + 4096)}"
    if kind == "boot-sector":
        return bytes(data), "boot sector: " + _scribble(data, rng, volume, volume + SECTOR, 16)
    if kind == "partition-table":
        lo, hi = extra["table"]
        return bytes(data), "table: " + _scribble(data, rng, lo, hi, 16)
    if kind == "bitlocker-metadata":
        lo = rng.choice(extra["fve"])
        return bytes(data), "FVE metadata: " + _scribble(data, rng, lo, lo + 4096, 32)
    if kind == "truncate":
        cut = rng.randrange(SECTOR, len(data))
        return bytes(data[:cut]), f"truncated at {cut} of {len(data)}"
    raise ValueError(kind)


def run(argv: list[str]) -> dict:
    """One command in-process: exit code, whether it ended in a traceback, the output."""
    faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
    try:
        result = CliRunner().invoke(app, argv, catch_exceptions=True)
    finally:
        faulthandler.cancel_dump_traceback_later()
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    tb = ""
    if crashed and result.exc_info is not None:
        tb = "".join(traceback.format_exception(*result.exc_info))
    output = result.output
    return {"argv": argv[0], "code": result.exit_code, "crashed": crashed,
            "traceback": tb or ("Traceback" in output and output) or "",
            "stderr": output[-300:]}


def case(work: Path, name: str, kind: str, seed: int, spec: dict) -> dict:
    rng = random.Random(f"{name}/{kind}/{seed}")
    out: dict = {"fixture": name, "kind": kind, "seed": seed}
    dest = work / f"{name}-{kind}-{seed}"
    dest.mkdir()
    if name == "e01":
        # Corrupt one segment inside its sections (header, tables, chunks...).
        segs = [dest / p.name for p in spec["segments"]]
        for p, d in zip(spec["segments"], segs, strict=True):
            shutil.copyfile(p, d)
        target = rng.choice(segs)
        data = bytearray(target.read_bytes())
        if rng.random() < 0.2:
            cut = rng.randrange(13, len(data))
            target.write_bytes(bytes(data[:cut]))
            out["what"] = f"{target.name} truncated at {cut}"
        else:
            out["what"] = f"{target.name}: " + _scribble(data, rng, 13, len(data), 64)
            target.write_bytes(bytes(data))
        image = segs[0]
    else:
        data, what = corrupt(kind, spec["bytes"], rng, spec["volume"], spec)
        image = dest / "image.raw"
        image.write_bytes(data)
        out["what"] = what
    out["image"] = str(image)
    creds = spec.get("creds", [])
    out["info"] = run(["info", str(image), "--json", *creds])
    out["ls"] = run(["ls", str(image), "/", "-r", "--volume", str(spec["index"]), *creds])
    container = dest / "out.zip"
    out["collect"] = run(["collect", str(image), "-o", str(container), "--rule", spec["rule"],
                          "-q", "--json", "--disk-hash", "md5", *creds])
    out["container"] = str(container) if container.exists() else ""
    if container.exists():
        out["verify"] = run(["verify", str(container), "--json"])
        try:
            with zipfile.ZipFile(container) as zf:
                out["manifest"] = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
                out["log"] = zf.read("log.jsonl").decode()
                out["acquisition"] = json.loads(zf.read("acquisition.json"))
        except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
            out["container_error"] = str(exc)
    return out


CASE_TIMEOUT = 30.0


def main() -> None:
    global CASE_TIMEOUT
    ap = argparse.ArgumentParser()
    ap.add_argument("plan", type=Path, help="JSON: fixtures, kinds, seeds")
    ap.add_argument("work", type=Path)
    ap.add_argument("--budget", type=float, default=45.0, help="seconds for all cases")
    ap.add_argument("--case-timeout", type=float, default=30.0)
    args = ap.parse_args()
    CASE_TIMEOUT = args.case_timeout
    plan = json.loads(args.plan.read_text())
    specs = plan["fixtures"]
    for spec in specs.values():
        if "segments" in spec:
            spec["segments"] = [Path(p) for p in spec["segments"]]
        else:
            spec["bytes"] = Path(spec["path"]).read_bytes()
    began = time.monotonic()
    done = 0
    for name, kind, seed in plan["cases"]:
        if time.monotonic() - began > args.budget:
            break
        print(json.dumps(case(args.work, name, kind, seed, specs[name])), flush=True)
        done += 1
    print(json.dumps({"done": done, "seconds": round(time.monotonic() - began, 2)}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
