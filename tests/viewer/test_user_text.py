"""User text that once broke a page or a file (issue 18): a `$...$` category was parsed as
matplotlib mathtext (compare crashed before report.md, the viewer's chart 500'd, push
crashed), report.md copied a category's HTML verbatim, /row/<huge> was a 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.viewer.sample_runs import make_compare

MATH = r"costs $\frac{$ and $x^$"  # not valid mathtext: it raised ValueError when drawn
HTML = '<img src=x onerror="alert(1)"> [click](javascript:alert(2)) *bold* a|b'


@pytest.fixture
def odd_compare(tmp_path: Path) -> Path:
    return make_compare(tmp_path, "odd", categories=(MATH, HTML, "plain"))


def test_compare_with_mathtext_and_html_categories_writes_its_report(odd_compare: Path) -> None:
    manifest = json.loads((odd_compare / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert (odd_compare / "chart.png").stat().st_size > 1000
    report = (odd_compare / "report.md").read_text()
    assert "<img" not in report and "[click](javascript" not in report
    assert "&lt;img src=x onerror=\"alert(1)\"&gt; \\[click\\](javascript:alert(2)) " \
           "\\*bold\\* a\\|b" in report
    assert r"costs $\\frac{$ and $x^$" in report
    assert "judge: `fake:judge`" in report


def test_viewer_chart_and_push_draw_the_category_literally(odd_compare: Path,
                                                           tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from synthcodec.push import build_folder
    from synthcodec.viewer.app import Viewer

    viewer = Viewer(odd_compare)
    c = TestClient(viewer.app, base_url="http://127.0.0.1:8765")
    chart = c.get("/chart/wtl.png")
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")
    pushed = build_folder(odd_compare, tmp_path / "out", "me/odd")
    assert (pushed.folder / "charts" / "wtl.png").stat().st_size > 1000


def test_chart_text_is_never_mathtext() -> None:
    from matplotlib.text import Text

    from synthcodec.report import charts

    fig, (ax,) = charts.new_figure()
    ax.barh([MATH, "b"], [1, 2])
    ax.set_title(r"$\alpha$")
    ax.legend([r"$\nope$"])
    assert charts.png_bytes(fig).startswith(b"\x89PNG")
    texts = [t for t in fig.findobj(Text) if t.get_text()]
    assert {t.get_text() for t in texts} >= {MATH, r"$\alpha$", r"$\nope$"}
    assert not any(t.get_parse_math() for t in texts)


@pytest.mark.parametrize("rid", ["99999999999999999999", str(2 ** 63), str(2 ** 63 - 1), "0"])
def test_a_row_number_past_the_end_is_404(cmp_run: Path, rid: str) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from synthcodec.viewer.app import Viewer

    c = TestClient(Viewer(cmp_run).app, base_url="http://127.0.0.1:8765")
    assert c.get(f"/row/{rid}").status_code == 404
    assert c.post("/review", data={"rid": rid, "status": "kept", "token": "x"}).status_code == 403


def test_report_markdown_shows_category_markup_as_text() -> None:
    from synthcodec.report.compare import render_markdown, summarize

    row = {"bench": "b<i>1</i>", "category": "<script>x</script>", "score_a_first": 8,
           "score_b_first": 4, "score_a_second": 8, "score_b_second": 4}
    md = render_markdown(summarize([row]), label_a="A*", label_b="B`", judge="j`x")
    assert "<script>" not in md and "<i>" not in md
    assert r"b&lt;i&gt;1&lt;/i&gt; / &lt;script&gt;x&lt;/script&gt;" in md
    assert r"A = **A\***, B = **B\`**; judge: ``j`x``." in md
