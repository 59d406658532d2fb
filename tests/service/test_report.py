"""The report renderer: the Markdown subset training writes, escaped, with only allowed images."""

from __future__ import annotations

import os
from pathlib import Path

from service.report import markdown_to_html, report_images

REPORT = """# Model sentiment: validation report

- **validation rows**: 200
- **git**: `abc123`

Temperature (fitted on the validation split): **0.5516**

| metric | before scaling | after scaling |
| --- | --- | --- |
| accuracy | 0.7250 | 0.7250 |

## ROC curve

![ROC curve](roc.png)
"""


def allow(*names: str):
    return lambda name: f"/img/{name}" if name in names else None


def test_renders_what_training_writes():
    html = markdown_to_html(REPORT, allow("roc.png"))
    assert "<h1>Model sentiment: validation report</h1>" in html
    assert "<li><strong>validation rows</strong>: 200</li>" in html
    assert "<code>abc123</code>" in html
    assert "<p>Temperature (fitted on the validation split): <strong>0.5516</strong></p>" in html
    assert "<thead><tr><th>metric</th><th>before scaling</th><th>after scaling</th></tr></thead>" in html
    assert "<tr><td>accuracy</td><td>0.7250</td><td>0.7250</td></tr>" in html
    assert "<h2>ROC curve</h2>" in html
    assert '<img src="/img/roc.png" alt="ROC curve" loading="lazy">' in html


def test_renders_the_real_training_report(tmp_path: Path):
    from training.report import write_report

    curves = {
        "roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]},
        "reliability_uncalibrated": [{"predicted": 0.2, "observed": 0.3}],
        "reliability_calibrated": [{"predicted": 0.2, "observed": 0.25}],
    }
    metrics = dict(
        n=2,
        accuracy=0.5,
        precision=0.5,
        recall=0.5,
        f1=0.5,
        roc_auc=0.6,
        log_loss=0.7,
        ece=0.1,
        confusion_matrix={"tn": 1, "fp": 0, "fn": 1, "tp": 0},
    )
    evaluation = {"temperature": 1.2, "uncalibrated": metrics, "calibrated": metrics, "curves": curves}
    path = write_report(tmp_path, "Model <x> & co", evaluation, context={"rows": "<b>2</b>"})
    images = report_images(tmp_path)
    assert images == ["reliability.png", "roc.png"]
    html = markdown_to_html(path.read_text(), allow(*images))
    assert "<h1>Model &lt;x&gt; &amp; co</h1>" in html
    assert "&lt;b&gt;2&lt;/b&gt;" in html and "<b>" not in html
    assert html.count("<img ") == 2 and html.count("<table>") == 2


def test_escapes_markup_everywhere():
    hostile = "\n".join(
        [
            "# <script>alert(1)</script>",
            "- <img src=x onerror=alert(2)>",
            "| <b>h</b> | x |",
            "| --- | --- |",
            "| <script>c</script> | `<i>code</i>` |",
            'text with "quotes" & <tags> and **<em>bold</em>**',
            '![x" onerror="alert(3)](roc.png)',
        ]
    )
    html = markdown_to_html(hostile, allow("roc.png"))
    for fragment in ("<script", "<img src=x", "<b>", "<i>", "<em>bold", "<tags>"):
        assert fragment not in html, fragment
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<code>&lt;i&gt;code&lt;/i&gt;</code>" in html
    assert 'alt="x&quot; onerror=&quot;alert(3)"' in html


def test_only_allowed_images_become_img_tags():
    md = (
        "![a](../manifest.json) ![b](http://evil.example/x.png) ![c](other.png) ![d](roc.png) "
        "![e](.hidden.png)"
    )
    html = markdown_to_html(md, allow("roc.png", "other.png", ".hidden.png"))
    assert html.count("<img ") == 2
    assert '<img src="/img/other.png"' in html and '<img src="/img/roc.png"' in html
    assert html.count("(image not available)") == 3
    assert "manifest" not in html and "evil.example" not in html and ".hidden" not in html


def test_report_images_lists_plain_png_files_only(tmp_path: Path):
    for name in ("roc.png", "b.png", ".hidden.png", "notes.md", "x.png.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    os.symlink("/etc/passwd", tmp_path / "link.png")
    assert report_images(tmp_path) == ["b.png", "roc.png"]
    assert report_images(tmp_path / "missing") == []
