"""datakit.torch.StoreDataset: items equal to the store's samples, splits and index lists, a transform,
loader workers that open the file themselves, and the README's example run verbatim."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from datakit.errors import DatakitError  # noqa: E402
from datakit.store import Store  # noqa: E402
from datakit.torch import StoreDataset  # noqa: E402
from tests.helpers import REPO  # noqa: E402


def test_items_are_the_stores_samples_as_tensors(acdc_store: Path):
    ds = StoreDataset(acdc_store, split="valid")
    with Store(acdc_store) as s:
        assert np.array_equal(ds.indices, s.indices("valid")) and len(ds) == len(s.indices("valid")) > 0
        for k in (0, len(ds) - 1):
            item, ref = ds[k], s.sample(int(ds.indices[k]))
            assert item["image"].dtype == torch.float32 and item["image"].shape == ref["image"].shape
            assert np.array_equal(item["image"].numpy(), ref["image"])
            assert item["mask"].dtype == item["scribble"].dtype == torch.uint8
            assert np.array_equal(item["mask"].numpy(), ref["mask"])
            assert np.array_equal(item["scribble"].numpy(), ref["scribble"])
            assert item["label_state"].dtype == torch.int8
            assert np.array_equal(item["label_state"].numpy(), ref["label_state"])
            assert item["index"] == ref["index"]
            for key in ("dataset", "patient", "frame", "view"):
                assert item[key] == str(ref[key])
            assert item["slice"] == int(ref["slice"]) and item["spacing"].tolist() == ref["spacing"].tolist()
    assert "keypoints" not in ds[0]  # ACDC has none
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_indices_all_and_bad_arguments(acdc_store: Path):
    with Store(acdc_store) as s:
        n = len(s)
    ds = StoreDataset(acdc_store, indices=[5, 2, 7])
    assert [ds[k]["index"] for k in range(3)] == [5, 2, 7]
    assert len(StoreDataset(acdc_store)) == len(StoreDataset(acdc_store, split="all")) == n
    with pytest.raises(DatakitError, match="outside the store's"):
        StoreDataset(acdc_store, indices=[0, n])
    with pytest.raises(DatakitError, match="not both"):
        StoreDataset(acdc_store, split="train", indices=[0])
    with pytest.raises(DatakitError, match="no split 'nope'"):
        StoreDataset(acdc_store, split="nope")
    with pytest.raises(DatakitError, match="callable"):
        StoreDataset(acdc_store, transform="flip")  # type: ignore[arg-type]


def _flip_and_tag(d: dict) -> dict:  # module level: picklable for loader workers
    return {**d, "image": torch.flip(d["image"], dims=[-1]), "mask": torch.flip(d["mask"], dims=[-1]),
            "tag": "flipped"}


def test_workers_open_the_file_themselves_and_run_the_transform(acdc_store: Path):
    ds = StoreDataset(acdc_store, split="train", transform=_flip_and_tag)
    assert not ds._h5.is_open  # making the dataset leaves no open handle to be inherited by a fork
    pickle.loads(pickle.dumps(ds))
    ref = [ds[k] for k in range(len(ds))]  # the main process now holds a handle; workers must not share it
    assert ds._h5.is_open
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._h5.is_open and len(clone) == len(ds)
    seen = {}
    for batch in DataLoader(ds, batch_size=4, shuffle=True, num_workers=2):
        assert batch["tag"] == ["flipped"] * len(batch["index"])
        for j, i in enumerate(batch["index"].tolist()):
            seen[i] = (batch["image"][j], batch["mask"][j], batch["patient"][j])
    assert sorted(seen) == sorted(int(r["index"]) for r in ref)
    for r in ref:
        image, mask, patient = seen[r["index"]]
        assert torch.equal(image, r["image"]) and torch.equal(mask, r["mask"]) and patient == r["patient"]
    with Store(acdc_store) as s:
        raw = s.sample(int(ds.indices[0]))["image"]
    assert np.array_equal(ref[0]["image"].numpy(), raw[..., ::-1])  # the transform ran


def test_readme_python_example_runs_verbatim(acdc_phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]):
    """On the README's own store: acdc.h5 converted with MAAG's split (here from the phantoms: patient004
    is a scribble patient), whose training split is train_scribble (it has no train)."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5 and "DataLoader" in code and "datakit.torch" in code
    split = re.search(r"(?m)^\$ datakit convert acdc \S+ --out acdc.h5 --split (\S+)$", readme).group(1)
    assert split == "file:manifests/acdc_maag_split.json"  # the store the example names
    opts = ConvertOptions(out=tmp_path / "acdc.h5", workers=1, progress=False,
                          split=split.replace("file:", f"file:{REPO}/"))
    convert(AcdcSource(acdc_phantoms), opts, log=lambda m: None)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    n_train = len(StoreDataset(tmp_path / "acdc.h5", split="train_scribble"))
    assert n_train and len(lines) == -(-n_train // 8)
    assert lines[0].startswith("torch.Size([8, 1, 224, 224]) torch.Size([8, 224, 224]) ['patient004'")


def test_keypoints_of_stores_that_have_them(tmp_path: Path):
    from datakit.sample import Sample, label_state_from_mask
    from datakit.store import StoreWriter

    kp = np.array([[3.0, 4.0, 1.0], [np.nan, np.nan, -1.0]], np.float32)
    m = np.zeros((8, 8), np.uint8)
    samples = [Sample(image=np.zeros((1, 8, 8), np.float32), mask=m, scribble=np.full((8, 8), 255, np.uint8),
                      label_state=label_state_from_mask(m, 2), dataset="unity", patient=f"v{i}", keypoints=kp)
               for i in range(2)]
    with StoreWriter(tmp_path / "k.h5", classes=["background", "LV"], image_size=(8, 8),
                     keypoint_names=["apex", "mv"]) as w:
        w.append(samples)
        w.set_patients({"id": ["v0", "v1"]})
        w.set_splits({"train": [0, 1]}, method="random", seed=0, ratios=[1.0])
    batch = next(iter(DataLoader(StoreDataset(tmp_path / "k.h5", split="train"), batch_size=2)))
    assert batch["keypoints"].shape == (2, 2, 3) and batch["keypoints"].dtype == torch.float32
    assert np.array_equal(batch["keypoints"][0].numpy(), kp, equal_nan=True)
