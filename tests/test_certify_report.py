"""The certification report as written: JSON read back equal, a self-contained HTML page that says the
verdict, every check and the command, well-formed SVG timelines, escaping of hostile names, and one
line when the directory cannot be written (sandbox/certify/report.py, docs/certify.md "The report")."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest

from bus.errors import CityBusError
from sandbox.certify.model import (
    Adapted,
    Check,
    DetectionScore,
    DetectionSpec,
    FaultWindow,
    Lane,
    Report,
    RunSummary,
    Thresholds,
    Timeline,
)
from sandbox.certify.report import read_report, render_html, render_markdown, report_schema, write_report
from sandbox.certify.timeline import timeline_svg

ROOT = Path(__file__).resolve().parent.parent
DAY = datetime(2018, 8, 27, 22, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script> & \"quoted\" 'single'"
PLAN = """seed = 7

[[faults]]
kind = "stuck"
subjects = ["drammen.air.>"]
start = "2h"
duration = "3h"
"""


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def lane(entity: str, inputs: list[float], outputs: list[float]) -> Lane:
    return Lane(entity=entity, inputs=[at(h) for h in inputs], outputs=[at(h) for h in outputs])


def run_summary(run: str, *, plan: str = "", entity: str = "kirkeparken", omitted: int = 0) -> RunSummary:
    faulted = bool(plan)
    lanes = [
        lane(entity, [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0], [0.51, 1.01, 1.51, 2.01, 6.01]),
        lane("bragernes", [0.2, 7.0, 13.0, 19.5], [0.21, 7.01, 13.01, 19.51]),
        lane("marienlyst", [1.0, 12.0], []),
    ]
    faults = [
        FaultWindow(kind="stuck", entity=entity, start=at(2), end=at(5), hits=4),
        FaultWindow(kind="duplicate", entity="bragernes", start=at(7), end=at(7), hits=1),
        FaultWindow(kind="restart", entity="", start=at(10), end=at(10.1), hits=0),
    ]
    timeline = Timeline(
        start=at(0),
        end=at(24),
        lanes=lanes,
        faults=faults if faulted else [],
        crashes=[at(3.5)] if faulted else [],
        omitted_lanes=omitted,
    )
    return RunSummary(
        run=run,
        description="stuck air-quality sensors" if faulted else "the recorded day, no faults",
        seed=7,
        plan=plan,
        injected={"stuck": 4, "duplicate": 1} if faulted else {},
        inputs=14,
        outputs=9,
        handled=14,
        dead_letters=1 if faulted else 0,
        crashes=1 if faulted else 0,
        refusals=0,
        latency_p50=36.0,
        latency_p99=None if faulted else 61.5,
        peak_rss_mib=61.2,
        cpu_seconds=1.25,
        wall_seconds=8.4,
        verdict="fail" if faulted else "pass",
        timeline=timeline,
    )


def check(
    name: str, run: str, verdict: str, value: float | None, threshold: float | None, unit: str
) -> Check:
    return Check(
        check=name,
        run=run,
        verdict=verdict,  # type: ignore[arg-type]
        value=value,
        threshold=threshold,
        unit=unit,
        summary=f"{name} in {run}: {verdict}",
        examples=[f"drammen.air.{run}.kirkeparken id-{n}" for n in range(2)] if verdict == "fail" else [],
    )


def make_report(*, entity: str = "kirkeparken", command: str = "citybus certify watch --seed 7") -> Report:
    checks = [
        check("contract-fit", "clean", "pass", 0, 0, "count"),
        check("latency-p50", "clean", "pass", 36.0, 120.0, "seconds"),
        check("liveness", "stuck", "pass", 0.92, 0.8, "ratio"),
        check("crashes", "stuck", "fail", 1, 0, "count"),
        check("peak-rss", "stuck", "pass", 61.2, 512.0, "MiB"),
        check("precision:stuck", "all", "fail", 0.5, 0.9, "ratio"),
        check("latency-p99", "stuck", "n/a", None, 900.0, "seconds"),
    ]
    return Report(
        citybus="0.1.0",
        adapter=Adapted(
            adapter="watch",
            instance="watch",
            source="/adapters/watch",
            consumes=["AirQualityObservation"],
            produces=["SensorAlert"],
            consumed_subjects=["drammen.air.>"],
            produced_subjects=["drammen.alerts.>"],
            detections=[
                DetectionSpec(
                    contract="SensorAlert",
                    field="problem",
                    kinds={"stuck": "stuck"},
                    entity="station",
                    time="",
                )
            ],
        ),
        suite="default",
        suite_version=1,
        suite_description="every preset once",
        seed=7,
        speed=3600.0,
        recording="sandbox/data/drammen-2018-08-28.mcap",
        command=command,
        started=datetime(2026, 12, 7, 2, 0, 1, tzinfo=UTC),
        finished=datetime(2026, 12, 7, 2, 0, 19, tzinfo=UTC),
        verdict="fail",
        thresholds=Thresholds(),
        checks=checks,
        detection=[
            DetectionScore(
                kind="stuck",
                detections=4,
                true_positives=2,
                false_alarms=2,
                episodes=3,
                detected=2,
                precision=0.5,
                recall=0.67,
                false_alarm_examples=["stuck on marienlyst at 2018-08-28T01:00:00Z"],
            ),
            DetectionScore(
                kind="outage",
                detections=0,
                true_positives=0,
                false_alarms=0,
                episodes=0,
                detected=0,
                precision=None,
                recall=None,
            ),
        ],
        runs=[run_summary("clean", entity=entity), run_summary("stuck", plan=PLAN, entity=entity, omitted=3)],
    )


class PageParser(HTMLParser):
    """Checks that tags balance, and collects the text, the tags and every src/href."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self.attributes: dict[str, list[dict[str, str | None]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.setdefault(tag, []).append(dict(attrs))
        self.links += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.setdefault(tag, []).append(dict(attrs))
        self.links += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_page(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def test_report_json_reads_back_equal(tmp_path: Path) -> None:
    report = make_report()
    files = write_report(report, tmp_path / "out" / "report")
    assert files.json == tmp_path / "out" / "report" / "report.json"
    assert msgspec.json.decode(files.json.read_bytes(), type=Report) == report
    assert read_report(files.json) == report
    assert files.json.read_text().startswith("{\n")  # indented, for a person reading the artifact


def test_the_html_page_is_self_contained_and_says_the_verdict_every_check_and_the_command(
    tmp_path: Path,
) -> None:
    report = make_report()
    page = write_report(report, tmp_path).html.read_text(encoding="utf-8")
    parser = parse_page(page)
    text = " ".join(parser.text)
    assert "script" not in parser.tags
    assert "link" not in parser.tags and "img" not in parser.tags
    assert [link for link in parser.links if re.match(r"\s*(https?:)?//", link)] == []
    assert "@import" not in page and "url(" not in page
    verdict = [a for a in parser.attributes["span"] if a.get("id") == "verdict"]
    assert verdict and verdict[0]["class"] == "verdict fail"
    assert "FAIL" in text and "2 of 7 checks failed" in text
    for item in report.checks:
        assert item.summary in text
    assert report.command in text
    assert "seed 7" in text.replace("\n", " ") or "With seed 7" in text
    assert 'seed = 7\n\n[[faults]]\nkind = "stuck"' in text  # the plan, as TOML
    assert len(parser.attributes["svg"]) == len(report.runs)  # each run's timeline, inline
    assert "stuck on marienlyst at 2018-08-28T01:00:00Z" in text  # a false-alarm example


def test_checks_are_listed_failures_first(tmp_path: Path) -> None:
    report = make_report()
    markdown = render_markdown(report)
    table = markdown.split("## Checks", 1)[1].split("###", 1)[0]
    verdicts = [
        row.split("|")[3].strip() for row in table.splitlines() if row.startswith("| ") and "---" not in row
    ]
    assert verdicts[0] == "verdict"
    assert verdicts[1:] == ["FAIL", "FAIL", "PASS", "PASS", "PASS", "PASS", "N/A"]
    html_rows = re.findall(r'<tr class="(fail|pass|na)">', render_html(report).split('id="checks"', 1)[1])
    assert html_rows[:7] == ["fail", "fail", "pass", "pass", "pass", "pass", "na"]


def test_the_markdown_page_shows_the_same_and_its_timelines_are_files_beside_it(tmp_path: Path) -> None:
    report = make_report()
    files = write_report(report, tmp_path)
    markdown = files.markdown.read_text(encoding="utf-8")
    assert markdown.startswith("# Certification of watch — suite default v1\n")
    assert "**Verdict: FAIL**" in markdown
    assert "```console\ncitybus certify watch --seed 7\n```" in markdown
    assert f"```toml\n{PLAN.rstrip()}\n```" in markdown
    assert "| stuck | 4 | 2 | 2 | 3 | 2 | 0.50 | 0.67 |" in markdown
    clean, stuck = markdown.split("### Run ")[1:]
    assert clean.startswith("clean: PASS") and "No check of this run failed." in clean
    assert stuck.startswith("stuck: FAIL") and "Failed here: crashes." in stuck
    assert "| crashes | 1 |" in stuck and "| latency p99 | — |" in stuck
    assert [path.name for path in files.timelines] == ["timeline-clean.svg", "timeline-stuck.svg"]
    for path in files.timelines:
        assert f"]({path.name})" in markdown
        assert ET.parse(path).getroot().tag == f"{SVG}svg"


def test_the_timeline_has_a_row_per_lane_a_band_per_fault_window_and_the_crashes() -> None:
    run = make_report().runs[1]
    root = ET.fromstring(timeline_svg(run.timeline, width=800))
    assert root.get("width") == "800"
    lanes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "lane"]
    assert [g.get("data-entity") for g in lanes] == [lane.entity for lane in run.timeline.lanes]
    inputs = [p for g in lanes for p in g.iter(f"{SVG}path") if p.get("class") == "inputs"]
    assert [len(re.findall("M", p.get("d", ""))) for p in inputs] == [8, 4, 2]  # one tick per input
    bands = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "fault"]
    assert [b.get("data-kind") for b in bands] == ["stuck", "duplicate", "restart"]
    assert float(bands[1].get("width", "0")) >= 2  # an instant still shows
    assert float(bands[2].get("height", "0")) == 3 * float(bands[0].get("height", "0")) + 6  # all rows
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "crash"]) == 1
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "3 entities left out" in texts
    assert {"stuck (fault)", "duplicate (fault)", "restart (fault)", "crash", "input", "output"} <= set(texts)
    assert {"22:00", "00:00", "12:00", "2018-08-28"} <= set(texts)  # hour ticks, and the day they are on


def test_a_fault_on_an_entity_left_out_is_counted_not_drawn() -> None:
    timeline = Timeline(
        start=at(0),
        end=at(1),
        lanes=[lane("a", [0.1], [0.2])],
        faults=[FaultWindow(kind="outage", entity="gone", start=at(0.2), end=at(0.4), hits=2)],
        crashes=[],
        omitted_lanes=1,
    )
    root = ET.fromstring(timeline_svg(timeline))
    assert [r for r in root.iter(f"{SVG}rect") if r.get("class") == "fault"] == []
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "1 entity left out; 1 fault window on entities not drawn" in texts


def test_hostile_strings_are_text_in_every_page(tmp_path: Path) -> None:
    hostile_entity = HOSTILE + "\x1b[31m"
    report = make_report(entity=hostile_entity, command="citybus certify '<b>x</b>' --seed 7")
    report = msgspec.structs.replace(
        report,
        checks=[
            *report.checks,
            msgspec.structs.replace(report.checks[3], summary=HOSTILE, examples=[HOSTILE]),
        ],
        suite_description=HOSTILE,
    )
    files = write_report(report, tmp_path)
    page = files.html.read_text(encoding="utf-8")
    parser = parse_page(page)
    assert "script" not in parser.tags and "b" not in parser.tags
    assert "<script" not in page.lower()
    text = " ".join(parser.text)
    assert HOSTILE in text
    assert "citybus certify '<b>x</b>' --seed 7" in text
    entities = [g.get("data-entity") for g in parser.attributes["g"] if g.get("class") == "lane"]
    assert HOSTILE + "\ufffd[31m" in entities  # escaped, and the control character XML forbids replaced
    for path in files.timelines:
        root = ET.parse(path).getroot()
        assert HOSTILE + "\ufffd[31m" in [g.get("data-entity") for g in root.iter(f"{SVG}g")]
    markdown = files.markdown.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # code blocks show their text as it is
    assert re.findall(r"(?<!\\)[<&]", prose) == []  # no raw HTML, no entity: Markdown shows text
    assert r"""\<script\>alert(1)\</script\> \& "quoted" 'single'""" in prose
    assert "```console\ncitybus certify '<b>x</b>' --seed 7\n```" in markdown


def test_run_names_become_safe_unique_file_names(tmp_path: Path) -> None:
    report = make_report()
    first, second = report.runs
    report = msgspec.structs.replace(
        report,
        runs=[
            msgspec.structs.replace(first, run="../etc/passwd"),
            msgspec.structs.replace(second, run="etc passwd"),
        ],
    )
    files = write_report(report, tmp_path)
    assert [p.name for p in files.timelines] == ["timeline-etc-passwd.svg", "timeline-etc-passwd-2.svg"]
    assert all(p.parent == tmp_path and p.is_file() for p in files.timelines)


def test_a_directory_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "report"
    with pytest.raises(CityBusError) as caught:
        write_report(make_report(), target)
    message = str(caught.value)
    assert "\n" not in message
    assert str(target) in message and message.startswith("cannot create the report directory")


def test_a_report_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()  # a directory where the page goes
    with pytest.raises(CityBusError, match=r"^cannot write .*report\.html: Is a directory$"):
        write_report(make_report(), tmp_path)


def test_reading_something_that_is_no_report_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"schema": "citybus.certify/1"}')
    with pytest.raises(CityBusError, match="is not a certify report: Object missing required field"):
        read_report(path)
    with pytest.raises(CityBusError, match="cannot read the certify report"):
        read_report(tmp_path / "missing.json")


def test_without_detections_the_page_says_they_were_not_scored() -> None:
    report = msgspec.structs.replace(make_report(), detection=[], verdict="pass")
    assert "precision and recall were not scored" in render_markdown(report)
    page = render_html(report)
    assert "precision and recall were not scored" in page and 'class="verdict pass"' in page


def property_sets(schema: object) -> list[set[str]]:
    """Every ``properties`` object's keys in a JSON Schema, wherever msgspec puts its definitions."""
    found: list[set[str]] = []
    if isinstance(schema, dict):
        if isinstance(schema.get("properties"), dict):
            found.append(set(schema["properties"]))
        for value in schema.values():
            found += property_sets(value)
    elif isinstance(schema, list):
        for value in schema:
            found += property_sets(value)
    return found


def field_names(struct: type[msgspec.Struct]) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(struct)]


def documented_fields() -> dict[str, list[str]]:
    """The report's section of the docs: each ``#### `Name` `` heading and the fields its table lists."""
    certify = ROOT / "docs" / "certify.md"
    text = certify.read_text(encoding="utf-8") if certify.is_file() else ""
    if "## The report" not in text:
        text = (ROOT / "docs" / "certify-report.md").read_text(encoding="utf-8")
    section = text.split("## The report", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[str]] = {}
    for block in re.split(r"\n#### ", section)[1:]:
        name = re.match(r"`(\w+)`", block)
        assert name, block[:40]
        tables[name.group(1)] = re.findall(r"^\| `(\w+)` \|", block, flags=re.MULTILINE)
    return tables


STRUCTS = {
    struct.__name__: struct
    for struct in (
        Report,
        Adapted,
        DetectionSpec,
        Thresholds,
        Check,
        DetectionScore,
        RunSummary,
        Timeline,
        Lane,
        FaultWindow,
    )
}


def test_the_docs_list_every_field_of_the_report() -> None:
    assert documented_fields() == {name: field_names(struct) for name, struct in STRUCTS.items()}


def test_the_schema_describes_the_report_and_each_part() -> None:
    schema = report_schema()
    sets = property_sets(schema)
    for struct in STRUCTS.values():
        assert set(field_names(struct)) in sets, struct.__name__
