#!/usr/bin/env python3
"""Benchmark selective_imager against the peers an examiner would use instead.

    bench/run [--quick] [--rounds N] [--only W,...] [--cold] [--no-install]

Peers (each in its own venv under bench/.cache/venvs/): Fox-IT acquire (+ dissect.fve for
BitLocker) and plaso's image_export; coreutils md5sum/sha1sum/sha256sum and The Sleuth Kit's
``fls`` for disk hashing and directory walking. Workloads are built on first use
(``bench/workloads.py``, root needed) and cached in bench/.cache/images/.

Each workload runs every tool in turn, interleaved (A B C A B C ...), ``--rounds`` times;
each run is measured alone (wall time, user+sys CPU and peak RSS of that child via wait4),
then its output is read back and checked against the builder's truth. Results go to stdout
and to bench/results/latest.md and latest.json (last-partial.* for --quick/--only runs).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules, run as a script
import measure
import outputs
import workloads as wl

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
VENVS = CACHE / "venvs"
OUT = CACHE / "out"
RESULTS = HERE / "results"
RULES = HERE / "rules"
SI = str(ROOT / ".venv" / "bin" / "selective-imager")
PY = str(ROOT / ".venv" / "bin" / "python")
ARTIFACT_FILTERS = ("WindowsRegistryFilesAndTransactionLogs,WindowsEventLogs,"
                    "WindowsPrefetchFiles,NTFSMFTFiles,NTFSUSNJournal,NTFSLogFile")
PEER_PACKAGES = {
    "acquire": ["acquire", "dissect.fve"],  # dissect.fve: acquire's BitLocker support (-K)
    "plaso": ["plaso"],
    "tools": ["py-spy", "pyinstrument"],  # profilers: never in the project venv
}


# --------------------------------------------------------------------------- set-up
def ensure_venv(name: str) -> str | None:
    """Create/refresh a peer venv; return None if usable, else why not."""
    venv = VENVS / name
    marker = venv / ".bench-installed"
    want = " ".join(PEER_PACKAGES[name])
    if marker.exists() and marker.read_text().strip() == want:
        return None
    print(f"[setup] installing {want} into {venv}", flush=True)
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, capture_output=True)
        res = subprocess.run([*pip, *PEER_PACKAGES[name]], capture_output=True, text=True)
        if res.returncode:
            return f"pip install {want} failed: {res.stderr.strip().splitlines()[-1:]}"
    except (OSError, subprocess.CalledProcessError) as e:
        return f"venv {name}: {e}"
    marker.write_text(want + "\n")
    return None


def pkg_version(venv: str, pkg: str) -> str:
    py = VENVS / venv / "bin" / "python"
    if not py.exists():  # --no-install before the peers were ever installed
        return "not installed"
    res = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({pkg!r}))"],
                         capture_output=True, text=True)
    return res.stdout.strip() or "?"


def first_line(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr) else "?"


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    git = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                            "selective_imager"], capture_output=True, text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(),
            "cpu": cpu, "ram_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "os": first_line(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
            "python": platform.python_version(),
            "tool_under_test": f"{first_line([SI, '--version'])} (git {git}"
                               + (", uncommitted changes in selective_imager/)" if dirty else ")")}


# --------------------------------------------------------------------------- tools
@dataclass
class Tool:
    key: str
    label: str
    kind: str  # "ours", "peer" or "bound"
    cmd: Callable[[Path], list[str]]
    read: Callable[[Path, Path], dict] | None = None  # (outdir, stdout log) -> facts
    env: dict[str, str] = field(default_factory=dict)
    ok_rcs: tuple[int, ...] = (0,)
    unavailable: str | None = None  # why it cannot run (recorded, not fatal)


def ours_collect(img: Path, rule: str, *extra: str) -> Callable[[Path], list[str]]:
    return lambda d: [SI, "collect", str(img), "-o", str(d / "out.zip"), "--rule", rule,
                      "--disk-hash", "none", "--quiet", *extra]


def acquire_cmd(img: Path, *extra: str) -> Callable[[Path], list[str]]:
    acq = str(VENVS / "acquire" / "bin" / "acquire")
    return lambda d: [acq, str(img), "-p", "none", "--ntfs", "--registry", "--eventlogs",
                      "--prefetch", *extra, "-o", str(d)]


def image_export_cmd(img: Path, *extra: str) -> Callable[[Path], list[str]]:
    ie = str(VENVS / "plaso" / "bin" / "image_export")
    return lambda d: [ie, "-u", *extra, "--partitions", "all", "--artifact_filters",
                      ARTIFACT_FILTERS, "-w", str(d / "export"), str(img)]


def checked(reader: Callable[[Path], outputs.Output], expected: dict) -> Callable[[Path, Path], dict]:
    def read(d: Path, _log: Path) -> dict:
        out = reader(d)
        return {"output_bytes": out.size, "files": len(out.files),
                "check": outputs.check(out, expected)}
    return read


def collection_tools(img: Path, expected: dict, bitlocker: bool, peer_errors: dict,
                     plain_twin: Path | None = None) -> list[Tool]:
    rule = str(RULES / "bench-like-for-like.yaml")
    creds: tuple[str, ...] = ()
    acq_extra: tuple[str, ...] = ()
    ie_extra: tuple[str, ...] = ()
    if bitlocker:
        creds = ("--password-file", str(wl.IMAGES / "bitlocker1g.password.txt"))
        acq_extra = ("-K", str(wl.IMAGES / "bitlocker1g.keychain.csv"))
        ie_extra = ("--credential", f"password:{wl.BITLOCKER_PASSWORD}")
    read_ours = checked(lambda d: outputs.read_ours(d / "out.zip"), expected)
    read_acq = checked(outputs.read_acquire, expected)
    read_ie = checked(lambda d: outputs.read_image_export(d / "export"), expected)
    tools = []
    if bitlocker:
        if plain_twin is not None:
            # The same collection from the unencrypted twin, interleaved in the same
            # rounds: the BitLocker overhead as a ratio from one run.
            tools.append(Tool("ours-plain", "selective-imager (zip) on the plain twin (win1g)",
                              "bound", ours_collect(plain_twin, rule), read_ours))
        tools += [
            Tool("ours", "selective-imager (zip, default decryptor)", "ours",
                 ours_collect(img, rule, *creds), read_ours, ok_rcs=(0,)),
            Tool("ours-pybde", "selective-imager (zip, pybde)", "ours",
                 ours_collect(img, rule, *creds), read_ours,
                 env={"SELECTIVE_IMAGER_BDE_BACKEND": "pybde"}),
            Tool("acquire-tar", "acquire -K (tar)", "peer",
                 acquire_cmd(img, *acq_extra, "-ot", "tar"), read_acq,
                 unavailable=peer_errors.get("acquire")),
            Tool("image_export", "image_export --credential", "peer",
                 image_export_cmd(img, *ie_extra), read_ie,
                 unavailable=peer_errors.get("plaso")),
        ]
    else:
        tools += [
            Tool("ours", "selective-imager (zip, deflate)", "ours",
                 ours_collect(img, rule), read_ours),
            Tool("ours-store", "selective-imager --store", "ours",
                 ours_collect(img, rule, "--store"), read_ours),
            Tool("acquire-tar", "acquire (tar)", "peer", acquire_cmd(img, "-ot", "tar"),
                 read_acq, unavailable=peer_errors.get("acquire")),
            Tool("acquire-zip", "acquire (zip --compress)", "peer",
                 acquire_cmd(img, "-ot", "zip", "--compress"), read_acq,
                 unavailable=peer_errors.get("acquire")),
            Tool("image_export", "image_export", "peer", image_export_cmd(img), read_ie,
                 unavailable=peer_errors.get("plaso")),
        ]
    return tools


def dry_run_reader(_d: Path, log: Path) -> dict:
    data = json.loads(log.read_text())
    items = data["items"] if isinstance(data, dict) else data
    return {"files": len(items),
            "lnk": sum(1 for i in items if str(i.get("path", "")).lower().endswith(".lnk"))}


def fls_reader(_d: Path, log: Path) -> dict:
    lines = n_lnk = n_file = 0
    with open(log, "rb") as f:
        for line in f:
            lines += 1
            if line.startswith((b"r/r", b"-/r")) and b":" in line:
                n_file += 1
                name = line.rstrip(b"\n").split(b"\t", 1)[-1]
                if name.lower().endswith(b".lnk") and b":$" not in name:
                    n_lnk += 1
    return {"files": lines, "regular_files": n_file, "lnk": n_lnk}


def hash_reader(expected: dict[str, str], style: str) -> Callable[[Path, Path], dict]:
    def read(_d: Path, log: Path) -> dict:
        text = log.read_text(errors="replace")
        got: dict[str, str] = {}
        if style == "ours":
            data = json.loads(text)
            got = {k: v for k, v in _find_hashes(data).items() if k in expected}
        elif style == "md5":
            got = {"md5": text.split()[0]}
        else:
            digests = re.findall(r"^([0-9a-f]{32,64})\s", text, re.M)
            got = {{32: "md5", 40: "sha1", 64: "sha256"}[len(d)]: d for d in digests}
        ok = bool(got) and all(expected[k] == v for k, v in got.items())
        return {"hashes_ok": ok, "algorithms": sorted(got)}
    return read


def _find_hashes(obj: object) -> dict[str, str]:
    """md5/sha1/sha256 values anywhere in our hash --json output."""
    found: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("md5", "sha1", "sha256") and isinstance(v, str):
                found.setdefault(k, v)
            else:
                for kk, vv in _find_hashes(v).items():
                    found.setdefault(kk, vv)
    elif isinstance(obj, list):
        for v in obj:
            for kk, vv in _find_hashes(v).items():
                found.setdefault(kk, vv)
    return found


def ewfverify_reader(expected: dict[str, str]) -> Callable[[Path, Path], dict]:
    """The digests ewfverify/ewfacquire print, checked against the builder's."""
    def read(_d: Path, log: Path) -> dict:
        text = log.read_text(errors="replace")
        got = {}
        m = re.search(r"MD5 hash calculated over data:\s+([0-9a-f]{32})", text)
        if m:
            got["md5"] = m.group(1)
        m = re.search(r"^SHA1:\s+([0-9a-f]{40})", text, re.M)
        if m:
            got["sha1"] = m.group(1)
        ok = bool(got) and all(expected[k] == v for k, v in got.items())
        return {"hashes_ok": ok, "algorithms": sorted(got)}
    return read


def e01_output_reader(expected: dict[str, str], style: str) -> Callable[[Path, Path], dict]:
    """Size of the E01 set written into the run's folder, its MD5, and ewfverify of ours."""
    def read(d: Path, log: Path) -> dict:
        files = sorted(d.glob("disk.E[0-9][0-9]"))
        facts: dict = {"output_bytes": sum(f.stat().st_size for f in files), "files": len(files)}
        if style == "ours":
            got = {k: v for k, v in _find_hashes(json.loads(log.read_text())).items()
                   if k in expected}
            verify = subprocess.run(["ewfverify", "-q", str(d / "disk.E01")],
                                    capture_output=True, text=True)
            m = re.search(r"MD5 hash calculated over data:\s+([0-9a-f]{32})", verify.stdout)
            ok = verify.returncode == 0 and m is not None and m.group(1) == expected["md5"]
            facts["algorithms"] = [*sorted(got), "ewfverify"]
        else:
            facts.update(ewfverify_reader(expected)(d, log))
            return facts
        facts["hashes_ok"] = ok and bool(got) and all(expected[k] == v for k, v in got.items())
        return facts
    return read


def ewf_workloads(rw: Callable[..., dict], rounds: int, cold: bool) -> dict:
    """E01 in (hash, triage collect) and a physical image out (image, collect --image)."""
    meta = wl.build("win1g-e01", False)
    e01 = wl.IMAGES / meta["image"]
    raw = wl.IMAGES / meta["raw_image"]
    exp_hashes = meta["disk_hashes"]
    exp = outputs.expected_set(meta)
    read_ours = checked(lambda d: outputs.read_ours(d / "out.zip"), exp)
    res: dict = {}
    res["ewf-hash"] = rw(
        "ewf-hash", f"hash the 1 GiB disk's E01 ({e01.stat().st_size / 2**20:,.0f} MiB, "
        "deflate:fast)", e01,
        [Tool("ours", "selective-imager hash (md5+sha1+sha256, own reader)", "ours",
              lambda d: [SI, "hash", str(e01), "--disk-hash", "md5,sha1,sha256", "-q", "--json"],
              hash_reader(exp_hashes, "ours")),
         Tool("ours-pyewf", "selective-imager hash through pyewf", "ours",
              lambda d: [SI, "hash", str(e01), "--disk-hash", "md5,sha1,sha256", "-q", "--json"],
              hash_reader(exp_hashes, "ours"), env={"SELECTIVE_IMAGER_EWF_BACKEND": "pyewf"}),
         Tool("ewfverify", "ewfverify -d sha1 (md5+sha1)", "peer",
              lambda d: ["ewfverify", "-q", "-d", "sha1", str(e01)], ewfverify_reader(exp_hashes))],
        rounds, cold=cold, notes=["warm page cache for the E01 (every reader inflates the same "
                                  "chunks)"])
    prime(raw)
    res["ewf-collect"] = rw(
        "ewf-collect", "triage collection from the E01 and from the raw image", e01,
        [Tool("ours-e01", "selective-imager collect --rule triage, from the E01", "ours",
              ours_collect(e01, "triage"), read_ours),
         Tool("ours-raw", "the same from the raw image", "bound",
              ours_collect(raw, "triage"), read_ours)],
        rounds, cold=cold, notes=["--disk-hash none in both: the collection alone"])
    res["ewf-image"] = rw(
        "ewf-image", "a physical E01 of the 1 GiB raw disk", raw,
        [Tool("ours", "selective-imager image -o disk.E01 (md5+sha1, deflate fast)", "ours",
              lambda d: [SI, "image", str(raw), "-o", str(d / "disk.E01"), "-q", "--json"],
              e01_output_reader(exp_hashes, "ours")),
         Tool("ewfacquire", "ewfacquire -c deflate:fast -f encase6 (md5)", "peer",
              lambda d: ["ewfacquire", "-u", "-q", "-c", "deflate:fast", "-f", "encase6",
                         "-S", "2GiB", "-t", str(d / "disk"), str(raw)],
              e01_output_reader(exp_hashes, "ewfacquire"))],
        rounds, cold=cold, notes=["ours also checked with ewfverify after the run"],
        check_every_round=False)
    res["ewf-collect-image"] = rw(
        "ewf-collect-image", "triage collection with the disk hash, with and without --image",
        raw,
        [Tool("ours-image", "collect --rule triage --image disk.E01", "ours",
              lambda d: [SI, "collect", str(raw), "-o", str(d / "out.zip"), "--rule", "triage",
                         "--image", str(d / "disk.E01"), "--quiet"], read_ours),
         Tool("ours-hash", "collect --rule triage (disk hash md5+sha1+sha256 alone)", "bound",
              lambda d: [SI, "collect", str(raw), "-o", str(d / "out.zip"), "--rule", "triage",
                         "--quiet"], read_ours),
         Tool("ours-image-conc", "the same with --image and --disk-hash-mode concurrent",
              "ours",
              lambda d: [SI, "collect", str(raw), "-o", str(d / "out.zip"), "--rule", "triage",
                         "--image", str(d / "disk.E01"), "--disk-hash-mode", "concurrent",
                         "--quiet"], read_ours),
         Tool("ours-hash-conc", "the same with --disk-hash-mode concurrent, no image", "bound",
              lambda d: [SI, "collect", str(raw), "-o", str(d / "out.zip"), "--rule", "triage",
                         "--disk-hash-mode", "concurrent", "--quiet"], read_ours)],
        rounds, cold=cold, notes=["the first two hash the disk with md5+sha1+sha256 after the "
                                  "artifacts, the last two while collecting (one more read "
                                  "of the disk running beside the collection)"],
        check_every_round=False)
    return res


# --------------------------------------------------------------------------- running
def listing_reader(_d: Path, log: Path) -> dict:
    """The in-use count listing_parse.py printed (both readers must agree)."""
    data = json.loads(log.read_text().strip().splitlines()[-1])
    return {"in_use": data["in_use"]}


def listing_members(d: Path, _log: Path) -> dict:
    """Entries, deleted and damaged of the container's listings, and the members' size."""
    import zipfile

    with zipfile.ZipFile(d / "out.zip") as z:
        acq = json.loads(z.read("acquisition.json"))
        size = sum(i.file_size for i in z.infolist() if i.filename.startswith("listing/"))
    rows = acq.get("listing") or []
    return {"listing_entries": sum(r["entries"] for r in rows),
            "listing_deleted": sum(r["deleted"] for r in rows),
            "listing_damaged": sum(r["damaged"] for r in rows), "listing_bytes": size}


def listing_workloads(rw: Callable[..., dict], rounds: int, cold: bool, quick: bool) -> dict:
    """--listing's cost: triage on win1g with and without it; the 1M-entry volume listed."""
    out: dict = {}
    meta = wl.build("win1g", False)
    img = wl.IMAGES / meta["image"]
    out["listing-win1g"] = rw(
        "listing-win1g", "collect --rule triage on the 1 GiB disk, --listing vs --no-listing",
        img,
        [Tool("no-listing", "collect --rule triage --no-listing", "peer",
              ours_collect(img, "triage", "--no-listing")),
         Tool("listing", "collect --rule triage --listing", "ours",
              ours_collect(img, "triage", "--listing"), listing_members)],
        rounds, cold=cold,
        notes=["--disk-hash none in both (the disk hash would hide the listing's cost)"])
    name = "entries200k" if quick else "million"
    meta = wl.build(name, False)
    img = wl.IMAGES / meta["image"]
    nothing = str(RULES / "bench-nothing.yaml")
    out["listing-scale"] = rw(
        "listing-scale", f"{meta['mft_entries_in_use']:,} MFT entries: the listing alone", img,
        [Tool("no-listing", "collect --rule bench-nothing --no-listing", "peer",
              ours_collect(img, nothing, "--no-listing")),
         Tool("listing", "collect --rule bench-nothing --listing", "ours",
              ours_collect(img, nothing, "--listing"), listing_members),
         Tool("pyfsntfs", "pyfsntfs reads every entry (no output)", "peer",
              lambda d: [PY, str(HERE / "listing_parse.py"), str(img), "pyfsntfs"],
              listing_reader),
         Tool("own-parser", "own MFT parser reads every record (no output)", "ours",
              lambda d: [PY, str(HERE / "listing_parse.py"), str(img), "own"],
              listing_reader)],
        rounds, cold=cold,
        notes=["bench-nothing selects no file: collect's wall is opening the disk plus the "
               "listing; the two parser rows read the same $MFT without writing anything"])
    return out


def prime(img: Path) -> None:
    """Read the image once so every tool starts from the same (warm) page cache."""
    with open(img, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def run_workload(name: str, title: str, img: Path, tools: list[Tool], rounds: int, *,
                 cold: bool, notes: list[str], check_every_round: bool = True,
                 keep: bool = False) -> dict:
    print(f"\n== {name}: {title}", flush=True)
    res: dict = {"title": title, "image": img.name, "image_bytes": img.stat().st_size,
                 "cold": cold, "notes": notes, "tools": {}}
    for t in tools:
        res["tools"][t.key] = {"label": t.label, "kind": t.kind, "runs": [], "facts": [],
                               "unavailable": t.unavailable}
    if not cold:
        prime(img)
    for r in range(rounds):
        for t in tools:
            if t.unavailable:
                continue
            d = OUT / name / t.key
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            # no run may pay for the previous run's writeback
            dropped = measure.drop_caches() if cold else (os.sync() or False)
            log = d.parent / f"{t.key}.r{r}.log"
            run = measure.run(t.cmd(d), log=log, env=t.env, cwd=d, cold=dropped)
            # our tool fsyncs its container (evidence must be durable); the peers do not:
            # time the flush of what each run left dirty, reported beside the wall time
            t_sync = time.perf_counter()
            os.sync()
            entry = res["tools"][t.key]
            entry["runs"].append(run.as_dict() | {"flush": time.perf_counter() - t_sync})
            facts: dict = {}
            if t.read and (check_every_round or r == 0):
                try:
                    facts = t.read(d, log)
                except Exception as e:  # a broken output is a result, not a crash
                    facts = {"read_error": f"{type(e).__name__}: {e}"}
            entry["facts"].append(facts)
            if not keep:  # outputs add up to GBs; logs stay beside them
                shutil.rmtree(d, ignore_errors=True)
            ok = run.rc in t.ok_rcs and not run.timed_out
            extra = ""
            if "check" in facts:
                ck = facts["check"]
                extra = (f" content {ck['matched']}/{ck['expected']}"
                         f" missing {len(ck['missing'])} wrong {len(ck['mismatched'])}"
                         f" extra {len(ck['extra'])}")
            print(f"  r{r} {t.key:<14} {run.wall:8.2f} s  cpu {run.cpu:7.2f} s  "
                  f"rss {run.maxrss_mb:7.1f} MiB  rc {run.rc}{'' if ok else ' (FAILED)'}{extra}",
                  flush=True)
            if not ok:
                entry.setdefault("failure_log_tail", log.read_text(errors="replace")[-2000:])
    for t in tools:
        e = res["tools"][t.key]
        if e["runs"]:
            e["summary"] = summary(e["runs"], t.ok_rcs)
    return res


def summary(runs: list[dict], ok_rcs: tuple[int, ...]) -> dict:
    ok = [r for r in runs if r["rc"] in ok_rcs and not r["timed_out"]]
    use = ok or runs
    return {"n": len(runs), "ok": len(ok),
            "wall": statistics.median(r["wall"] for r in use),
            "wall_min": min(r["wall"] for r in use), "wall_max": max(r["wall"] for r in use),
            "cpu": statistics.median(r["cpu"] for r in use),
            "durable": statistics.median(r["wall"] + r.get("flush", 0.0) for r in use),
            "maxrss_mb": max(r["maxrss_mb"] for r in use),
            "failed": not ok}


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 round, the 200k-entry volume instead of 1M, no 4 GiB hash")
    ap.add_argument("--rounds", type=int, help="rounds per workload (default 3; --quick 1)")
    ap.add_argument("--only", help="comma-separated workloads: collect, vdisk, bitlocker, "
                                   "bigfile, bde-read, scale, hash, ewf, listing, startup")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before every run (hashing always does)")
    ap.add_argument("--no-install", action="store_true", help="do not (re)install peer venvs")
    ap.add_argument("--no-peers", action="store_true",
                    help="run only our tool (and bounds), e.g. to measure the BitLocker overhead")
    ap.add_argument("--keep-outputs", action="store_true",
                    help="keep each tool's last output under bench/.cache/out/")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    only = set(args.only.split(",")) if args.only else None

    def want(w: str) -> bool:
        return only is None or w in only

    rw = functools.partial(run_workload, keep=args.keep_outputs)
    t_start = time.time()
    peer_errors: dict[str, str] = {}
    if not args.no_install:
        for v in PEER_PACKAGES:
            err = ensure_venv(v)
            if err:
                peer_errors[v] = err
                print(f"[setup] {err}", flush=True)
    info = machine()
    info["versions"] = {
        "acquire": pkg_version("acquire", "acquire"),
        "dissect.target": pkg_version("acquire", "dissect.target"),
        "dissect.fve": pkg_version("acquire", "dissect.fve"),
        "plaso": pkg_version("plaso", "plaso"),
        "sleuthkit": first_line(["fls", "-V"]),
        "coreutils": first_line(["md5sum", "--version"]),
    }
    info["rounds"] = rounds
    info["quick"] = args.quick
    info["drop_caches_permitted"] = measure.drop_caches()
    results: dict = {"machine": info, "peer_errors": peer_errors, "workloads": {}}
    W = results["workloads"]

    if want("collect"):
        meta = wl.build("win1g", False)
        img = wl.IMAGES / meta["image"]
        exp = outputs.expected_set(meta)
        W["win1g"] = rw(
            "win1g", "1 GiB Windows-like GPT disk, ~50,000 files: like-for-like triage", img,
            collection_tools(img, exp, False, peer_errors), rounds, cold=args.cold,
            notes=[f"{len(exp)} expected files (hives+logs, evtx, prefetch, $MFT, $LogFile, $J)",
                   "image_export's filters leave out the DEFAULT hive (+2 logs) and "
                   "Users/Default/NTUSER.DAT (not a ProfileList profile): its 4 missing "
                   "files are a selection difference; each peer's extras are listed under "
                   "Content-check details"])
    if want("vdisk"):
        meta = wl.build("win1g", False)
        raw = wl.IMAGES / meta["image"]
        disks = {f: wl.virtual_copy("win1g", f) for f in ("vhdx", "qcow2")}
        exp = outputs.expected_set(meta)
        rule = str(RULES / "bench-like-for-like.yaml")
        rd = checked(lambda d: outputs.read_ours(d / "out.zip"), exp)
        vtools = []
        # ours_collect passes --disk-hash none first: a later --disk-hash overrides it
        for suffix, extra, how in (("", (), "zip"), ("-store", ("--store",), "--store"),
                                   ("-hash", ("--disk-hash", "md5,sha1,sha256"), "zip + disk hash")):
            # the raw image is the baseline ("peer" kind: our rows show raw's wall / theirs)
            vtools.append(Tool(f"raw{suffix}", f"raw image, {how}", "peer",
                               ours_collect(raw, rule, *extra), rd))
            for fmt, path in disks.items():
                vtools.append(Tool(f"{fmt}{suffix}",
                                   f"{fmt} ({path.stat().st_size / 2**20:,.0f} MiB file), {how}",
                                   "ours", ours_collect(path, rule, *extra), rd))
        W["vdisk"] = rw(
            "vdisk", "the win1g collection from a dynamic VHDX and a QCOW2 (qemu-img convert) "
            "beside the raw image", raw, vtools, rounds, cold=args.cold,
            notes=["same like-for-like rule and content check as win1g; '+ disk hash' reads "
                   "the whole virtual disk (and, for the virtual disks, hashes each file "
                   "of the chain as received)"])
    if want("bitlocker"):
        meta = wl.build("bitlocker1g", False)
        img = wl.IMAGES / meta["image"]
        exp = outputs.expected_set(meta)
        twin = wl.IMAGES / wl.build("win1g", False)["image"]
        if not args.cold:
            prime(twin)
        tools = collection_tools(img, exp, True, peer_errors, plain_twin=twin)
        if args.no_peers:
            tools = [t for t in tools if t.kind != "peer"]
        W["bitlocker1g"] = rw(
            "bitlocker1g", "the same disk, NTFS in BitLocker AES-XTS-128 (password)", img,
            tools, rounds, cold=args.cold,
            notes=["image_export misses every profile hive here (it found them on the plain "
                   "disk): beyond the 4 files of the selection difference, a silent loss"])
    if want("bde-read"):
        meta = wl.build("bitlocker1g", False)
        img = wl.IMAGES / meta["image"]
        # The decryption alone: the whole volume read through each decryptor (pybde
        # unlocks in both; the fast path then decrypts with OpenSSL, checked against it).
        start, length = wl.partition_extent(img, meta["partition"])
        pw = str(wl.IMAGES / "bitlocker1g.password.txt")
        seen: dict[str, str] = {}

        def bde_reader(style: str) -> Callable[[Path, Path], dict]:
            def read(_d: Path, log: Path) -> dict:
                data = json.loads(log.read_text().strip().splitlines()[-1])
                if style == "pybde":
                    seen.setdefault("crc32", data["crc32"])
                ok = data["bytes"] == length and data["crc32"] == seen.get("crc32")
                return {"hashes_ok": ok, "algorithms": [f"crc32 {data['crc32']} = pybde's"],
                        "decryptor": data["decryptor"]}
            return read

        W["bitlocker-read"] = rw(
            "bitlocker-read", f"decrypt the whole {length / 2**20:,.0f} MiB BitLocker volume "
            "(unlock + sequential 4 MiB reads)", img,
            [Tool("pybde", "pybde decrypts", "peer",
                  lambda d: [PY, str(HERE / "bde_read.py"), str(img), str(start), str(length),
                             pw, "pybde"], bde_reader("pybde")),
             Tool("ours", "selective_imager fast path (OpenSSL)", "ours",
                  lambda d: [PY, str(HERE / "bde_read.py"), str(img), str(start), str(length),
                             pw, "openssl"], bde_reader("ours"))],
            rounds, cold=args.cold, notes=["both print a CRC-32 of the decrypted volume; "
                                           "ours must equal pybde's"])
    if want("bigfile"):
        meta = wl.build("bigfile", False)
        img = wl.IMAGES / meta["image"]
        rule = str(RULES / "bench-bigfile.yaml")
        exp = {outputs.norm(meta["file"]): {"sha256": meta["sha256"], "path": meta["file"],
                                             "size": meta["size"]}}
        rd = checked(lambda d: outputs.read_ours(d / "out.zip"), exp)
        acq = str(VENVS / "acquire" / "bin" / "acquire")
        W["bigfile"] = rw(
            "bigfile", "one 2 GiB file (random-looking data): memory", img,
            [Tool("ours-store", "selective-imager --store", "ours",
                  ours_collect(img, rule, "--store"), rd),
             Tool("ours", "selective-imager (zip, deflate)", "ours", ours_collect(img, rule), rd),
             Tool("acquire-tar", "acquire --path (tar, no hashes)", "peer",
                  lambda d: [acq, str(img), "-p", "none", "--path", f"/{meta['file']}",
                             "-ot", "tar", "-o", str(d)],
                  checked(outputs.read_acquire, exp), unavailable=peer_errors.get("acquire"))],
            rounds, cold=args.cold, notes=[], check_every_round=False)
    if want("scale"):
        name = "entries200k" if args.quick else "million"
        meta = wl.build(name, False)
        img = wl.IMAGES / meta["image"]
        W["scale"] = rw(
            "scale", f"{meta['mft_entries_in_use']:,} MFT entries: dry runs vs fls -r", img,
            [Tool("ours-triage", "selective-imager --dry-run --rule triage", "ours",
                  lambda d: [SI, "collect", str(img), "--dry-run", "--rule", "triage", "--json"],
                  dry_run_reader),
             Tool("ours-lnk", "selective-imager --dry-run '**/*.lnk'", "ours",
                  lambda d: [SI, "collect", str(img), "--dry-run", "--rule",
                             str(RULES / "bench-lnk-anywhere.yaml"), "--json"],
                  dry_run_reader),
             Tool("fls", f"fls -r -p -o {meta['ntfs_start_sector']}", "peer",
                  lambda d: ["fls", "-r", "-p", "-o", str(meta["ntfs_start_sector"]), str(img)],
                  fls_reader)],
            rounds, cold=args.cold,
            notes=[f"built in {meta['create_seconds']} s with {meta['writers']} ntfs-3g "
                   f"writers ({meta['entries_per_second']} entries/s)"])
    if want("listing"):
        W.update(listing_workloads(rw, rounds, args.cold, args.quick))
    if want("hash"):
        for name in ("win1g",) + (() if args.quick else ("hash4g",)):
            meta = wl.build(name, False)
            img = wl.IMAGES / meta["image"]
            exp = meta["disk_hashes"]
            W[f"hash-{name}"] = rw(
                f"hash-{name}", f"disk hashing md5+sha1+sha256, {img.stat().st_size / 2**30:.0f} GiB",
                img,
                [Tool("ours", "selective-imager hash", "ours",
                      lambda d, i=img: [SI, "hash", str(i), "--disk-hash", "md5,sha1,sha256",
                                        "-q", "--json"], hash_reader(exp, "ours")),
                 # opt-in piecewise SHA-256 per 1 GiB: a 4th pass over the data
                 Tool("ours-pieces", "selective-imager hash --piece-size 1GiB", "ours",
                      lambda d, i=img: [SI, "hash", str(i), "--disk-hash", "md5,sha1,sha256",
                                        "--piece-size", "1GiB", "-q", "--json"],
                      hash_reader(exp, "ours")),
                 Tool("md5-bound", "hashlib.md5 alone (bound)", "bound",
                      lambda d, i=img: [PY, str(HERE / "md5_bound.py"), str(i)],
                      hash_reader(exp, "md5")),
                 Tool("coreutils", "md5sum; sha1sum; sha256sum", "peer",
                      lambda d, i=img: ["sh", "-c", 'md5sum "$1"; sha1sum "$1"; sha256sum "$1"',
                                        "sh", str(i)], hash_reader(exp, "coreutils"))],
                rounds, cold=True, notes=[])
    if want("ewf"):
        W.update(ewf_workloads(rw, rounds, args.cold))
    if want("startup"):
        n = 5 if args.quick else 10
        W["startup"] = rw(
            "startup", "start-up: --version", Path(SI),
            [Tool("ours", "selective-imager --version", "ours", lambda d: [SI, "--version"]),
             Tool("python", "python -c pass (interpreter floor)", "bound",
                  lambda d: [PY, "-c", "pass"])],
            n, cold=False, notes=[])
    results["elapsed_seconds"] = round(time.time() - t_start)
    import report  # after the runs: report formatting only

    results["targets"] = report.targets(results)
    md = report.markdown(results)
    RESULTS.mkdir(exist_ok=True)
    # a subset (--only) or --quick run must not replace the full run's record
    stem = "latest" if only is None and not args.quick else "last-partial"
    if only == {"listing"}:
        stem = "listing"  # the --listing figures the README cites
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()
