"""`preview` pictures that read: captions of long ids (Unity's 64-hex codes) do not run into each other,
the title clears the first row at the default --n 16, and a store without scribbles gets no empty
scribble column. Checked on the drawn figure's text boxes when it is saved (its layout is final)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from datakit.preview import short_id, write_preview
from datakit.sample import Sample, label_state_from_mask
from datakit.store import StoreWriter

HEX = "0123456789abcdef"


def _store(path: Path, scribbles: bool, n: int = 20, classes: tuple[str, ...] = ("background", "LV")) -> Path:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        m = np.zeros((32, 32), np.uint8)
        m[8:20, 10:22] = 1
        sc = np.full((32, 32), 255, np.uint8)
        if scribbles:
            sc[12, 12:18] = 1
        vid = "".join(rng.choice(list(HEX), 64))  # Unity: one video's 64-hex code
        samples.append(Sample(image=rng.normal(size=(1, 32, 32)).astype(np.float32), mask=m, scribble=sc,
                              label_state=label_state_from_mask(m, len(classes)), dataset="unity", patient=f"01-{vid}",
                              frame=f"{i:04d}", view="A4C", scribble_source="synthetic:skeleton" if scribbles
                              else "none"))
    with StoreWriter(path, classes=list(classes), image_size=(32, 32), command="test") as w:
        w.append(samples)
        w.set_patients({"id": sorted({s.patient for s in samples})})
        w.set_splits({"train": list(range(n))}, method="random", seed=0, ratios=[1.0])
    return path


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figure of the next savefig, with its renderer (boxes in display pixels, y upwards)."""
    from matplotlib.figure import Figure

    figs: list = []
    save = Figure.savefig

    def savefig(fig: Figure, *args: object, **kwargs: object) -> None:
        save(fig, *args, **kwargs)
        r = fig.canvas.get_renderer()
        titles = [(ax, ax.title.get_text(), ax.title.get_window_extent(r)) for ax in fig.axes if ax.title.get_text()]
        figs.append({"fig_w": fig.get_figwidth() * fig.dpi, "fig_h": fig.get_figheight() * fig.dpi,
                     "titles": titles, "suptitle": fig._suptitle.get_window_extent(r),
                     "suptitle_text": fig._suptitle.get_text(),
                     "axes": [ax.get_window_extent(r) for ax in fig.axes if ax.images],
                     "legend": [t.get_text() for legend in fig.legends for t in legend.get_texts()]})

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figs


@pytest.mark.parametrize("n", [16, 4])  # 16: the default
def test_long_id_captions_and_the_title_do_not_overlap(tmp_path: Path, drawn: list, n: int):
    store = _store(tmp_path / "unity.h5", scribbles=True)
    write_preview(store, tmp_path / "p.png", n=n)
    d = drawn[0]
    assert len(d["axes"]) == n * 3
    boxes = [b for _, _, b in d["titles"]]
    for (ta, a), (tb, b) in itertools.combinations(zip([t for _, t, _ in d["titles"]], boxes, strict=True), 2):
        assert not a.overlaps(b), (ta, tb)
    for _, text, b in d["titles"]:
        assert b.x0 >= 0 and b.x1 <= d["fig_w"], text
        assert not any(b.overlaps(ax) for ax in d["axes"]), text  # not over an image (e.g. the row above)
    top_row = max(b.y1 for b in boxes + d["axes"])  # the first row's captions are the highest
    assert d["suptitle"].y0 > top_row, (d["suptitle"], top_row)
    assert d["suptitle"].y1 <= d["fig_h"] and d["suptitle"].x0 >= 0 and d["suptitle"].x1 <= d["fig_w"]
    assert d["suptitle_text"].startswith(f"unity.h5: {n} of 20 samples (all, seed 0)"), d["suptitle_text"]
    caption = d["titles"][0][1]
    assert caption.startswith("#") and "\u2026" in caption and "A4C" in caption  # the id cut in the middle


def test_no_scribble_column_without_scribbles(tmp_path: Path, drawn: list):
    write_preview(_store(tmp_path / "none.h5", scribbles=False), tmp_path / "p.png", n=4)
    titles = [t for _, t, _ in drawn[0]["titles"]]
    assert len(drawn[0]["axes"]) == 4 * 2 and not any(t.startswith("scribble") for t in titles), titles
    assert drawn[0]["suptitle_text"].endswith("no scribbles in this store"), drawn[0]["suptitle_text"]
    write_preview(_store(tmp_path / "some.h5", scribbles=True), tmp_path / "q.png", n=4)
    assert len(drawn[1]["axes"]) == 4 * 3


def test_the_legend_names_exactly_the_colours_drawn(tmp_path: Path, drawn: list):
    """Masks and predictions are drawn without background, scribbles with it: the legend follows. (It used to
    list every class, so a prediction preview showed a background colour that no panel had.)"""
    store = _store(tmp_path / "none.h5", scribbles=False)
    write_preview(store, tmp_path / "p.png", predictions={0: np.zeros((32, 32), np.uint8), 1: _square(1)})
    assert drawn[0]["legend"] == ["1 LV"]
    write_preview(_store(tmp_path / "some.h5", scribbles=True), tmp_path / "q.png", n=2)
    assert drawn[1]["legend"] == ["1 LV"]  # these scribbles hold only LV pixels
    three = _store(tmp_path / "three.h5", scribbles=False, classes=["background", "LV", "RV"])  # RV nowhere
    write_preview(three, tmp_path / "r.png", predictions={3: _square(1)})
    assert drawn[2]["legend"] == ["1 LV"]


def _square(k: int) -> np.ndarray:
    m = np.zeros((32, 32), np.uint8)
    m[4:12, 4:12] = k
    return m


def test_short_id():
    assert short_id("patient001", 22) == "patient001"
    s = short_id("01-" + "ab" * 32, 22)
    assert len(s) == 22 and s.startswith("01-ab") and s.endswith("abab")
