"""The certification report, written: ``report.json``, ``report.md`` and ``report.html`` (docs/certify.md).

:func:`write_report` turns a :class:`~sandbox.certify.model.Report` into a directory a company keeps
as its CI's artifact and a city reads to decide:

* ``report.json``: the report itself, msgspec's JSON of :class:`Report` (indented), which
  ``msgspec.json.decode(data, type=Report)`` reads back equal; its schema is :func:`report_schema`;
* ``report.md``: the human page in Markdown, the timelines as ``timeline-<run>.svg`` images beside it;
* ``report.html``: the same page as **one self-contained file**: inline CSS, the timelines as inline
  SVG, no script, nothing fetched (no external URL, no web font), so it opens from a CI artifact,
  a mail attachment or a disk with no network.

The page says, in this order: the verdict in total, how to reproduce it (the exact command and
seed), the checks (failures first, then what failed and examples), detection precision and recall
per fault kind with false-alarm examples, and one section per run with its figures, its fault plan
and its timeline (:func:`~sandbox.certify.timeline.timeline_svg`).

Decisions, and why:

* The page's content is built once as tables of plain text (:class:`_Table`) and rendered twice,
  to Markdown and to HTML: the two pages cannot disagree.
* Every string from the report is escaped where it is written: HTML-escaped (quotes too) in the
  page and the SVG, and in Markdown backslash-escaped so that neither Markdown nor raw HTML in an
  entity's name, an exception or a plan renders as anything but text. Entity names come from
  subjects, which anyone who may publish chooses.
* The HTML page carries a Content-Security-Policy that forbids scripts and every fetch: escaping is
  the defence, the policy is the second one should escaping ever miss.
* A directory that cannot be written is one :class:`~bus.errors.CityBusError` line naming the path
  and the operating system's reason, never a traceback: ``--report DIR`` is the user's choice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from bus.errors import CityBusError
from sandbox.certify.model import Check, Report, RunSummary
from sandbox.certify.timeline import escape, timeline_svg

__all__ = ["ReportFiles", "read_report", "render_html", "render_markdown", "report_schema", "write_report"]

_VERDICT: Final = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A"}
_CLASS: Final = {"pass": "pass", "fail": "fail", "n/a": "na"}
"""A verdict's CSS class."""
_ORDER: Final = {"fail": 0, "pass": 1, "n/a": 2}
"""Checks are listed failures first, then passes, then those that did not apply."""
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|&~#!])")
_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files :func:`write_report` wrote."""

    directory: Path
    json: Path
    markdown: Path
    html: Path
    timelines: tuple[Path, ...]
    """One SVG per run, in the report's order of runs (``report.md`` shows them)."""


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ``report.json`` (:class:`Report`), as msgspec generates it."""
    return msgspec.json.schema(Report)


def read_report(path: Path) -> Report:
    """A ``report.json`` read back; :class:`CityBusError` (one line) when it cannot be read or is none."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Report)
    except OSError as error:
        raise CityBusError(f"cannot read the certify report {path}: {error.strerror or error}") from error
    except msgspec.ValidationError as error:
        raise CityBusError(f"{path} is not a certify report: {error}") from error
    except msgspec.DecodeError as error:
        raise CityBusError(f"{path} is not JSON: {error}") from error


def write_report(report: Report, directory: Path) -> ReportFiles:
    """Write ``report.json``, ``report.md``, ``report.html`` and a ``timeline-<run>.svg`` per run into
    ``directory`` (created, parents too); files of those names are replaced."""
    names = _timeline_names(report)
    files = ReportFiles(
        directory=directory,
        json=directory / "report.json",
        markdown=directory / "report.md",
        html=directory / "report.html",
        timelines=tuple(directory / name for name in names),
    )
    _write(directory, None)
    _write(files.json, msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    for path, run in zip(files.timelines, report.runs, strict=True):
        _write(path, timeline_svg(run.timeline, title=f"Timeline of run {run.run}").encode())
    _write(files.markdown, render_markdown(report).encode())
    _write(files.html, render_html(report).encode())
    return files


def _write(path: Path, data: bytes | None) -> None:
    """Write ``data`` to ``path``, or make the directory ``path`` when ``data`` is None."""
    try:
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_bytes(data)
    except OSError as error:
        what = "create the report directory" if data is None else "write"
        raise CityBusError(f"cannot {what} {path}: {error.strerror or error}") from error


def _timeline_names(report: Report) -> list[str]:
    """``timeline-<run>.svg`` per run, the run's name made safe for a file name and unique."""
    names: list[str] = []
    for run in report.runs:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", run.run).strip(".-") or "run"
        name, number = f"timeline-{stem}.svg", 2
        while name in names:
            name, number = f"timeline-{stem}-{number}.svg", number + 1
        names.append(name)
    return names


# -- what the page says, as plain text ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    """Rows of plain text under a header; ``marks`` is each row's verdict (or '') for styling."""

    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    marks: Sequence[str]


def _title(report: Report) -> str:
    return f"Certification of {report.adapter.adapter} — suite {report.suite} v{report.suite_version}"


def _tally(report: Report) -> str:
    failed = sum(1 for check in report.checks if check.verdict == "fail")
    n_a = sum(1 for check in report.checks if check.verdict == "n/a")
    said = f"{failed} of {len(report.checks)} checks failed"
    return said + (f", {n_a} did not apply" if n_a else "")


def _facts(report: Report) -> _Table:
    adapted = report.adapter
    seconds = (report.finished - report.started).total_seconds()
    rows = [
        ("adapter", f"{adapted.adapter} (instance {adapted.instance}, source {adapted.source})"),
        ("consumes", ", ".join(adapted.consumes) or "nothing"),
        ("produces", ", ".join(adapted.produces) or "nothing"),
        ("detects", ", ".join(f"{d.contract}.{d.field}" for d in adapted.detections) or "nothing declared"),
        ("suite", f"{report.suite} version {report.suite_version}: {report.suite_description}"),
        ("seed", str(report.seed)),
        ("speed", f"{report.speed:g}× (replay seconds per wall second)"),
        ("recording", report.recording),
        ("citybus", report.citybus),
        ("ran", f"{_time(report.started)} to {_time(report.finished)} ({seconds:.1f} s)"),
    ]
    return _Table(("", ""), rows, [""] * len(rows))


def _ordered(checks: list[Check]) -> list[Check]:
    return sorted(checks, key=lambda check: _ORDER.get(check.verdict, 3))


def _checks(report: Report) -> _Table:
    checks = _ordered(report.checks)
    rows = [
        (
            c.check,
            c.run,
            _VERDICT.get(c.verdict, c.verdict),
            _amount(c.value, c.unit),
            _amount(c.threshold, c.unit),
            c.summary,
        )
        for c in checks
    ]
    header = ("check", "run", "verdict", "value", "threshold", "summary")
    return _Table(header, rows, [c.verdict for c in checks])


def _detection(report: Report) -> _Table:
    rows = [
        (
            s.kind,
            str(s.detections),
            str(s.true_positives),
            str(s.false_alarms),
            str(s.episodes),
            str(s.detected),
            _share(s.precision),
            _share(s.recall),
        )
        for s in report.detection
    ]
    header = (
        *("kind", "detections", "true positives", "false alarms"),
        *("episodes", "detected", "precision", "recall"),
    )
    return _Table(header, rows, ["fail" if s.false_alarms else "" for s in report.detection])


def _figures(run: RunSummary) -> _Table:
    rows = [
        ("inputs", str(run.inputs)),
        ("outputs", str(run.outputs)),
        ("handled", str(run.handled)),
        ("dead letters", str(run.dead_letters)),
        ("crashes", str(run.crashes)),
        ("refusals", str(run.refusals)),
        ("latency p50", _replay_seconds(run.latency_p50)),
        ("latency p99", _replay_seconds(run.latency_p99)),
        ("peak RSS", f"{run.peak_rss_mib:.1f} MiB"),
        ("CPU", f"{run.cpu_seconds:.2f} s"),
        ("wall", f"{run.wall_seconds:.1f} s"),
        ("injected", ", ".join(f"{kind} {n}" for kind, n in sorted(run.injected.items())) or "nothing"),
    ]
    marks = ["fail" if name == "crashes" and run.crashes else "" for name, _ in rows]
    return _Table(("figure", "value"), rows, marks)


def _failed_in(report: Report, run: RunSummary) -> str:
    """Which of the run's own checks failed, in a sentence."""
    failed = [c.check for c in report.checks if c.run == run.run and c.verdict == "fail"]
    return f"Failed here: {', '.join(failed)}." if failed else "No check of this run failed."


def _amount(value: float | None, unit: str) -> str:
    """A measured value or threshold with its unit, for a person."""
    if value is None:
        return "—"
    if unit == "count":
        return f"{value:g}"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "seconds":  # always seconds: a value and its threshold side by side compare at a glance
        return f"{value:,.1f} s" if abs(value) < 100 else f"{value:,.0f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "cpu-seconds":
        return f"{value:.2f} s CPU"
    return f"{value:g} {unit}".strip()


def _replay_seconds(value: float | None) -> str:
    return "—" if value is None else _amount(value, "seconds") + " (replay)"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _time(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


# -- Markdown ------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text for Markdown: on one line, and nothing in it read as Markdown or HTML."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _md_table(table: _Table) -> list[str]:
    lines = ["| " + " | ".join(_md(cell) for cell in table.header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in table.header) + "|")
    lines.extend("| " + " | ".join(_md(cell) for cell in row) + " |" for row in table.rows)
    return [*lines, ""]


def _md_code(text: str, language: str = "") -> list[str]:
    """A fenced code block holding ``text`` as it is (the fence longer than any run of backticks in it)."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [fence + language, text.rstrip("\n"), fence, ""]


def render_markdown(report: Report) -> str:
    """The human page in Markdown; its timelines are the ``timeline-<run>.svg`` files :func:`write_report`
    writes beside it."""
    verdict = _VERDICT.get(report.verdict, report.verdict)
    lines = [f"# {_md(_title(report))}", "", f"**Verdict: {verdict}** — {_md(_tally(report))}.", ""]
    lines += ["## Reproduce", "", f"With seed {report.seed}:", "", *_md_code(report.command, "console")]
    facts = _facts(report)
    lines += ["## What was certified", ""]
    lines += [f"- **{_md(name)}**: {_md(value)}" for name, value in facts.rows] + [""]
    lines += ["## Checks", "", *_md_table(_checks(report))]
    failed = [check for check in _ordered(report.checks) if check.verdict == "fail"]
    if failed:
        lines += ["### What failed", ""]
        for check in failed:
            lines.append(f"- **{_md(check.check)}** in run {_md(check.run)}: {_md(check.summary)}")
            lines += [f"  - {_md(example)}" for example in check.examples]
        lines.append("")
    lines += ["## Detection", ""]
    if report.detection:
        lines += _md_table(_detection(report))
        for score in report.detection:
            if score.false_alarm_examples:
                lines += [f"False alarms of kind {_md(score.kind)}:", ""]
                lines += [f"- {_md(example)}" for example in score.false_alarm_examples] + [""]
    else:
        lines += ["The adapter declares no detections: precision and recall were not scored.", ""]
    lines += ["## Runs", ""]
    for run, name in zip(report.runs, _timeline_names(report), strict=True):
        lines += [f"### Run {_md(run.run)}: {_VERDICT.get(run.verdict, run.verdict)}", ""]
        lines += [f"{_md(run.description)} (seed {run.seed}). {_md(_failed_in(report, run))}", ""]
        lines += _md_table(_figures(run))
        lines += ["Fault plan:", "", *_md_code(run.plan, "toml")] if run.plan.strip() else ["No faults.", ""]
        lines += [f"![Timeline of run {_md(run.run)}]({name})", ""]
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------

_CSS: Final = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:0 auto;
max-width:1100px;padding:0 20px 60px}
h1{font-size:1.6em;margin:.8em 0 .3em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de}
.verdict{display:inline-block;font-size:2.2em;font-weight:700;padding:.15em .7em;border-radius:8px;
color:#fff;margin:.2em 0}
.verdict.pass{background:#1a7f37}.verdict.fail{background:#cf222e}.verdict.na{background:#6e7781}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr.fail td{background:#ffebe9}tr.na td{color:#6e7781}
.v-fail{color:#cf222e;font-weight:700}.v-pass{color:#1a7f37;font-weight:700}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;overflow:auto}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.facts th{background:none;border:none;padding:2px 12px 2px 0}.facts td{border:none;padding:2px 0}
.timeline svg{max-width:100%;height:auto;border:1px solid #d0d7de}
section.run{margin-top:1.2em}
"""
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _html_table(table: _Table, css: str = "", verdict_column: int | None = None) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
    out = [f'<table class="{css}">' if css else "<table>", f"<thead><tr>{head}</tr></thead><tbody>"]
    for row, mark in zip(table.rows, table.marks, strict=True):
        cells = []
        for index, cell in enumerate(row):
            klass = f' class="v-{_CLASS[mark]}"' if index == verdict_column and mark in _CLASS else ""
            cells.append(f"<td{klass}>{escape(cell)}</td>")
        out.append((f'<tr class="{_CLASS[mark]}">' if mark in _CLASS else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(report: Report) -> str:
    """The human page as one self-contained HTML document (inline CSS and SVG, no script, nothing fetched)."""
    verdict = report.verdict if report.verdict in _VERDICT else "n/a"
    title = _title(report)
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _facts(report).rows)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}: {_VERDICT[verdict]}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p><span class="verdict {_CLASS[verdict]}" id="verdict">{_VERDICT[verdict]}</span></p>',
        f"<p>{escape(_tally(report))}.</p>",
        '<h2 id="reproduce">Reproduce</h2>',
        f"<p>With seed <strong>{report.seed}</strong>:</p>",
        f'<pre class="command"><code>{escape(report.command)}</code></pre>',
        '<h2 id="certified">What was certified</h2>',
        f'<table class="facts"><tbody>{facts}</tbody></table>',
        '<h2 id="checks">Checks</h2>',
        _html_table(_checks(report), "checks", verdict_column=2),
    ]
    failed = [check for check in _ordered(report.checks) if check.verdict == "fail"]
    if failed:
        out.append("<h3>What failed</h3><ul>")
        for check in failed:
            examples = "".join(f"<li><code>{escape(example)}</code></li>" for example in check.examples)
            out.append(
                f"<li><strong>{escape(check.check)}</strong> in run {escape(check.run)}: "
                + escape(check.summary)
                + (f"<ul>{examples}</ul>" if examples else "")
                + "</li>"
            )
        out.append("</ul>")
    out.append('<h2 id="detection">Detection</h2>')
    if report.detection:
        out.append(_html_table(_detection(report), "detection"))
        for score in report.detection:
            if score.false_alarm_examples:
                examples = "".join(f"<li><code>{escape(e)}</code></li>" for e in score.false_alarm_examples)
                out.append(f"<p>False alarms of kind {escape(score.kind)}:</p><ul>{examples}</ul>")
    else:
        out.append("<p>The adapter declares no detections: precision and recall were not scored.</p>")
    out.append('<h2 id="runs">Runs</h2>')
    out.extend(_html_run(run, index, _failed_in(report, run)) for index, run in enumerate(report.runs))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_run(run: RunSummary, index: int, failed: str) -> str:
    verdict = run.verdict if run.verdict in _VERDICT else "n/a"
    plan = (
        f'<p>Fault plan:</p><pre class="plan"><code>{escape(run.plan.rstrip())}</code></pre>'
        if run.plan.strip()
        else "<p>No faults.</p>"
    )
    svg = timeline_svg(run.timeline, title=f"Timeline of run {run.run}")
    return "\n".join(
        [
            f'<section class="run" id="run-{index}">',
            f'<h3>Run {escape(run.run)}: <span class="v-{_CLASS[verdict]}">{_VERDICT[verdict]}</span></h3>',
            f"<p>{escape(run.description)} (seed {run.seed}). {escape(failed)}</p>",
            _html_table(_figures(run), "figures"),
            plan,
            f'<div class="timeline">{svg}</div>',
            "</section>",
        ]
    )
