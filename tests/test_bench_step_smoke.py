"""Smoke test of the step benchmark, so that it does not rot between real runs."""

from __future__ import annotations

from pathlib import Path

from bench_runs import bench_usage_error, load_bench, run_bench, section_of

START, END = "<!-- bench_step:start -->", "<!-- bench_step:end -->"
OTHER = "<!-- bench_rebuild:start -->\nA colleague's section.\n<!-- bench_rebuild:end -->\n"
EXISTING = f"# Storage benchmarks\n\nSomeone else's text: left exactly as it is.\n\n{OTHER}"
SECTIONS = (
    "# Step benchmarks",
    "## Reproduce",
    "## Machine",
    "## Per step",
    "## Where a step's time goes",
    "## What grows: profile",
    "## Reading",
    "## Histories",
    "## Method",
)
CONFIGS = ("worker + compaction", "worker, no compaction", "library runtime (defaults)")


def test_tiny_run_writes_its_section_only(tmp_path: Path) -> None:
    argv = ["--lengths", "20,40", "--steps", "4", "--budget", "0", "--profile-steps", "2"]

    run = run_bench("bench_step", tmp_path / "benchmarks.md", *argv, existing=EXISTING)

    assert run.report.startswith(EXISTING)
    section = run.section("bench_step")
    for heading in SECTIONS:
        assert f"\n{heading}\n" in section
    assert "--lengths 20,40 --steps 4 --budget 0 --profile-steps 2" in section
    assert "| configuration | N events | steps timed |" in section
    for config in CONFIGS:
        assert section.count(f"| {config} | ") == 4  # two lengths, in two tables
        assert f"**{config}** (µs per step; 2 profiled steps" in section
    assert section.count("| views' SQL statement | N=") == 2  # the two worker configurations
    assert "| 20 | compacting |" in section
    assert "| 40 | never compacting |" in section
    assert "Is per-step overhead flat as history grows?" in section
    assert "| worker + compaction |" in run.stdout


def test_a_second_report_replaces_the_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(EXISTING, encoding="utf-8")
    write_section = load_bench("common").write_section

    write_section(out, "bench_step", "# Step benchmarks\n\nfirst run")
    out.write_text(out.read_text(encoding="utf-8") + "\nAdded meanwhile.\n", encoding="utf-8")
    write_section(out, "bench_step", "# Step benchmarks\n\nsecond run")

    report = out.read_text(encoding="utf-8")
    assert report.startswith(EXISTING)
    assert section_of(report, "bench_step") == "\n# Step benchmarks\n\nsecond run\n"
    assert report.endswith("\nAdded meanwhile.\n")


def test_splice_keeps_text_around_the_markers() -> None:
    splice = load_bench("common").splice
    document = f"before\n\n{START}\nold\n{END}\n\nafter\n"

    assert splice(document, "bench_step", "new") == f"before\n\n{START}\nnew\n{END}\n\nafter\n"
    assert splice("", "bench_step", "new") == f"{START}\nnew\n{END}\n"
    assert splice("text\n", "bench_step", "new") == f"text\n\n{START}\nnew\n{END}\n"


def test_a_section_put_first_goes_before_the_others() -> None:
    splice = load_bench("common").splice

    assert splice(OTHER, "bench_step", "new", first=True) == f"{START}\nnew\n{END}\n\n{OTHER}"


def test_rejects_bad_lengths() -> None:
    assert "at least 10 events" in bench_usage_error("bench_step", "--lengths", "5")
