"""``report.html``: one self-contained page describing a collection.

No network and no external files: the styles and the filtering script are inline, and a
Content-Security-Policy forbids every other source. Figures come from the manifest
records and ``acquisition.json``; nothing is recomputed from the content.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from selective_imager.collect.outcome import LOST_OUTCOMES, Outcome

REPORT_NAME = "report.html"

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f2f2f2}.mono{font-family:monospace}.bad{color:#a00}.ok{color:#070}
#controls{margin:.5em 0}#js-errors{color:#a00}
"""

# Filters the item table by text and outcome; the URL fragment (#q=TEXT&outcome=X)
# presets both, so a link can open the page filtered. Errors are written into the page.
_SCRIPT = """
(function(){
var errs=document.getElementById('js-errors');
window.addEventListener('error',function(e){errs.textContent+=String(e.message)+'\\n';});
var q=document.getElementById('filter'),o=document.getElementById('outcome');
var rows=Array.prototype.slice.call(document.querySelectorAll('#items tbody tr'));
var shown=document.getElementById('shown');
function apply(){
 var t=q.value.toLowerCase(),w=o.value,n=0;
 rows.forEach(function(r){
  var ok=(!w||r.getAttribute('data-outcome')===w)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
  r.style.display=ok?'':'none';if(ok)n++;});
 shown.textContent=n+' of '+rows.length+' items shown';
}
var h=new URLSearchParams(location.hash.slice(1));
if(h.get('q'))q.value=h.get('q');if(h.get('outcome'))o.value=h.get('outcome');
q.addEventListener('input',apply);o.addEventListener('change',apply);apply();
document.body.setAttribute('data-ready','1');
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[str, Any]], table_id: str) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _facts(acq: dict[str, Any]) -> str:
    src = acq.get("source") or {}
    case = acq.get("case") or {}
    rows = [
        ("tool", f"{acq.get('tool')} {acq.get('version')}"),
        ("started", acq.get("started")),
        ("ended", acq.get("ended")),
        ("status", acq.get("status")),
        # A live run's host is the host-facts object (collect/host.py).
        ("host", host.get("hostname") if isinstance(host := acq.get("host"), dict) else host),
        ("user", acq.get("user")),
        ("source", src.get("path")),
        ("source format", src.get("format")),
        ("source size", src.get("size")),
        *((f"case {k}", v) for k, v in case.items() if v),
    ]
    return _table(rows, "facts")


def _volumes(acq: dict[str, Any]) -> str:
    head = "<tr><th>volume</th><th>offset</th><th>size</th><th>file system</th><th>label</th><th>encryption</th><th>error</th></tr>"
    body = []
    for vol in acq.get("volumes") or []:
        fs = vol.get("filesystem") or {}
        enc = vol.get("encryption") or {}
        enc_text = f"{enc.get('type')} {enc.get('state')}" if enc else "none"
        body.append(
            f'<tr data-volume="{_e(vol.get("label"))}"><td>{_e(vol.get("label"))}</td>'
            f"<td>{_e(vol.get('offset'))}</td><td>{_e(vol.get('size'))}</td>"
            f"<td>{_e(fs.get('type'))}</td><td>{_e(fs.get('label'))}</td>"
            f'<td class="enc">{_e(enc_text)}</td><td class="bad">{_e(vol.get("error"))}</td></tr>'
        )
    return f'<table id="volumes">{head}{"".join(body)}</table>'


def _counts(records: list[dict[str, Any]]) -> str:
    outcomes = Counter(str(r.get("outcome")) for r in records)
    rows = "".join(
        f'<tr><th>{_e(o.value)}</th><td id="count-{o.value}">{outcomes.get(o.value, 0)}</td></tr>'
        for o in Outcome
    )
    rules: Counter[str] = Counter()
    for rec in records:
        for rule in rec.get("rules") or ["(none)"]:
            rules[str(rule)] += 1
    rule_rows = "".join(
        f'<tr><th>{_e(name)}</th><td class="rule-count" data-rule="{_e(name)}">{n}</td></tr>'
        for name, n in sorted(rules.items())
    )
    return (
        f'<table id="outcomes"><tr><th>items</th><td id="count-items">{len(records)}</td></tr>{rows}</table>'
        f'<h3>By rule</h3><table id="rules">{rule_rows}</table>'
    )


def _display(rec: dict[str, Any]) -> str:
    text = f"{rec.get('volume_label')}/{rec.get('path')}"
    return f"{text}:{rec['stream']}" if rec.get("stream") else text


def _failures(records: list[dict[str, Any]]) -> str:
    lost = [r for r in records if r.get("outcome") in LOST_OUTCOMES]
    if not lost:
        return '<p id="failures" data-count="0">No item failed or was partial.</p>'
    rows = "".join(
        f'<tr class="failure"><td class="mono">{_e(_display(r))}</td><td>{_e(r.get("outcome"))}</td>'
        f"<td>{_e(r.get('error'))}</td></tr>"
        for r in lost
    )
    return (
        f'<table id="failures" data-count="{len(lost)}"><tr><th>item</th><th>outcome</th>'
        f"<th>reason</th></tr>{rows}</table>"
    )


def seal_words(seal: dict[str, Any]) -> str:
    """The structural seal status (``summary()["seal"]``) as a sentence; only ``verify``
    re-hashes the content."""
    if not seal.get("present"):
        return "none: the container was not finished (no SEAL.json); run verify"
    if seal.get("error"):
        return f"{seal.get('name')} cannot be read: {seal['error']}"
    text = (
        f"{seal.get('name')} written {seal.get('created')} by {seal.get('tool')}, "
        f"listing {seal.get('members')} member(s)"
    )
    if seal.get("covers_all"):
        return text + ", exactly the other members (content checked only by verify)"
    problems = []
    if seal.get("unsealed"):
        problems.append("not covering " + ", ".join(seal["unsealed"]))
    if seal.get("missing"):
        problems.append("naming missing " + ", ".join(seal["missing"]))
    return text + "; DOES NOT MATCH the container: " + "; ".join(problems)


def _hashes(acq: dict[str, Any], seal: dict[str, Any] | None) -> str:
    disk = acq.get("disk_hash") or {}
    rows = [
        f'<tr><th>disk {_e(alg)}</th><td class="mono" id="disk-{_e(alg)}">{_e(v)}</td></tr>'
        for alg, v in (disk.get("digests") or {}).items()
    ]
    if disk:
        done = "complete" if disk.get("complete") else "INCOMPLETE"
        rows.append(
            f'<tr><th>disk hash</th><td id="disk-complete">{done}: {_e(disk.get("bytes_hashed"))}'
            f" of {_e(disk.get('size'))} bytes</td></tr>"
        )
    else:
        rows.append('<tr><th>disk hash</th><td id="disk-complete">not computed</td></tr>')
    if seal is None:
        text = (
            "SEAL.json is written after this page and covers it (a SHA-256 per member); "
            "run selective-imager verify to check it"
        )
    else:
        text = seal_words(seal)
    rows.append(f'<tr><th>seal</th><td id="seal">{_e(text)}</td></tr>')
    return f'<table id="hashes">{"".join(rows)}</table>'


def _items(records: list[dict[str, Any]]) -> str:
    options = "".join(f'<option value="{o.value}">{o.value}</option>' for o in Outcome)
    rows = []
    for rec in records:
        hashes = rec.get("hashes") or {}
        rows.append(
            f'<tr data-outcome="{_e(rec.get("outcome"))}"><td class="mono">{_e(_display(rec))}</td>'
            f"<td>{_e(rec.get('size'))}</td><td>{_e(rec.get('outcome'))}</td>"
            f"<td>{_e(', '.join(rec.get('rules') or []))}</td>"
            f'<td class="mono">{_e(hashes.get("sha256"))}</td>'
            f'<td class="mono">{_e(rec.get("container_path"))}</td></tr>'
        )
    return (
        '<div id="controls"><input id="filter" placeholder="filter items" size="40"> '
        f'<select id="outcome"><option value="">any outcome</option>{options}</select> '
        '<span id="shown"></span></div>'
        '<table id="items"><thead><tr><th>item</th><th>size</th><th>outcome</th><th>rules</th>'
        f"<th>sha256</th><th>member</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(
    acquisition: dict[str, Any], records: list[dict[str, Any]], seal: dict[str, Any] | None
) -> str:
    """The page: facts, volumes, counts, failures, hashes and seal, the item table.

    ``seal`` is None inside the container (the seal is written after the page) and the
    structural seal status when the page is exported from a finished container.
    """
    title = f"Collection report: {acquisition.get('source', {}).get('path', '')}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f'<pre id="js-errors"></pre><h1>{_e(title)}</h1>'
        f"<h2>Acquisition</h2>{_facts(acquisition)}"
        f"<h2>Volumes</h2>{_volumes(acquisition)}"
        f"<h2>Items by outcome</h2>{_counts(records)}"
        f"<h2>Failed and partial items</h2>{_failures(records)}"
        f"<h2>Hashes and seal</h2>{_hashes(acquisition, seal)}"
        f"<h2>Items</h2>{_items(records)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def report_bytes(
    acquisition: dict[str, Any], records: list[dict[str, Any]], seal: dict[str, Any] | None
) -> bytes:
    """:func:`render_report` as UTF-8."""
    return render_report(acquisition, records, seal).encode("utf-8")


__all__ = ["REPORT_NAME", "render_report", "report_bytes"]
