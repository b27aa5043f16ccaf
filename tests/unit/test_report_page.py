"""The report people read, from synthetic results of every claim (no lab): each section opens with the claim's
finding, then its plot, the rule and the measured values with plain names and units, raw files linked; an
index with verdict badges and the runs' metadata; checked in headless Chromium (every claim there, every image
loaded, links to files that exist) and printed to PDF."""
from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

import pytest

from experiments import registry, report
from experiments.verdict import VERDICTS, Verdict

RUN = "20260101-000000-000"


def _plot(path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([0, 1, 2, 3], [1, 0, 0, 1])
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """results/<slug>/<run>/ for every registered claim: verdict.json, metadata.json, a plot, raw files."""
    out = tmp_path_factory.mktemp("results")
    for i, slug in enumerate(registry.all_slugs()):
        exp = registry.get(slug)
        run = out / slug / RUN
        case = exp.all_cases(exp.params())[0].name
        (run / "raw" / case).mkdir(parents=True)
        (run / "raw" / case / "probe.csv").write_text("t,ok\n0,1\n")
        _plot(run / "plots" / "timeline.png", slug)
        measured = {key: 0.5 for key in exp.figures}
        measured.update({"longest_outage_s": 1.25, "p99_latency_ms": 12.5})
        v = Verdict(VERDICTS[i % 3], exp.rule_text({}), measured, ["a reason"], ["plots/timeline.png"], slug, exp.claim)
        v.summary = f"Synthetic finding of {slug}."
        v.save(run / "verdict.json")
        (run / "metadata.json").write_text(json.dumps({
            "slug": slug, "run_id": RUN, "started": "2026-01-01T00:00:00+00:00", "kernel": "6.1.0-test",
            "os": "Debian GNU/Linux 12", "machine": {"cores": 2, "memory_mib": 24000, "arch": "x86_64"},
            "python": {"version": "3.11.2"}, "packages": {"scapy": "2.8.0"}, "tools": {"nginx": "1.22.1"},
            "git": {"revision": "abc1234", "dirty": False}, "params": exp.params()}))
    report.build(out)
    return out


def test_sections_open_with_the_finding_and_name_values_plainly(results):
    page = (results / "report.html").read_text()
    for slug in registry.all_slugs():
        exp = registry.get(slug)
        section = page.split(f'<section class="claim" id="{slug}">')[1].split("</section>")[0]
        first = re.findall(r"<p class=\"(\w+)\"", section)
        assert first[:2] in (["statement", "finding"], ["finding"]), (slug, first)
        assert section.index("Synthetic finding") < section.index("<figure>") < section.index("How it was judged")
        for key, figure in exp.figures.items():
            assert f"{html.escape(figure.name)} <span class=\"key\">{html.escape(key)}</span>" in section, (slug, key)
        assert "longest outage" in section and "1.25 s" in section and "12.5 ms" in section
        assert f'href="{slug}/{RUN}/raw/' in section and f'href="{slug}/{RUN}/metadata.json"' in section
    assert "abc1234" in page and "24000 MiB" in page and "@media print" in page
    # offline: nothing loaded from elsewhere (plots are embedded; no script, stylesheet or font link)
    assert "<script" not in page and "<link" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def test_markdown_names_values_plainly(results):
    md = (results / "report.md").read_text()
    assert "longest outage" in md and "longest_outage_s |" not in md


def test_report_in_chromium_every_claim_every_image(results, tmp_path):
    from selenium.webdriver.common.by import By
    from tests.browser import chromium, full_screenshot
    with chromium() as driver:
        driver.get((results / "report.html").as_uri())
        slugs = registry.all_slugs()
        for slug in slugs:
            assert driver.find_elements(By.ID, slug), f"{slug} missing"
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == len(slugs)
        broken = [i.get_attribute("alt") for i in images
                  if not driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)]
        assert not broken, f"images that did not load: {broken}"
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, ".files a")]
        assert links and all(Path(l.removeprefix("file://")).is_file() for l in links)
        badges = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "nav.index .badge")]
        assert len(badges) == len(slugs) and set(badges) <= set(VERDICTS)
        pdf = base64.b64decode(driver.print_page())
        assert pdf[:4] == b"%PDF"
        pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
        assert pages > len(slugs), f"printed on {pages} pages: each claim should start its own"
        shots = Path(os.environ.get("WEBLAB_UI_SHOTS", tmp_path))
        driver.set_window_size(1100, 900)
        driver.save_screenshot(str(shots / "report-index.png"))
        driver.find_element(By.ID, slugs[0]).location_once_scrolled_into_view
        driver.save_screenshot(str(shots / "report-claim.png"))
        full_screenshot(driver, tmp_path / "report-full.png")
