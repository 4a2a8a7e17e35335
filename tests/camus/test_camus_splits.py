"""Official CAMUS splits (database_split/, listSubGroups/ folds) and the splits.py extension behind them."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.sources.camus import CamusSource, find_official_split
from datakit.store import validate_store
from tests.camus.helpers import convert_store


def _split_patients(store: Path) -> dict[str, list[str]]:
    with h5py.File(store) as f:
        patients = np.array(f["meta/patient"].asstr()[:])
        return {k: sorted(set(patients[f["splits"][k][:]])) for k in f["splits"]}


def test_patient_in_two_lists_names_the_file(nifti_copy: Path) -> None:
    valid = nifti_copy / "database_split" / "subgroup_validation.txt"
    first = (nifti_copy / "database_split" / "subgroup_training.txt").read_text().split()[0]
    valid.write_text(valid.read_text() + first + "\n")
    with pytest.raises(DatakitError, match=f"{first} is also listed in subgroup_training.txt") as e:
        CamusSource(nifti_copy)
    assert e.value.where == str(valid)


def test_official_split_notes_unknown_and_unlisted(nifti_copy: Path, tmp_path: Path) -> None:
    test_list = nifti_copy / "database_split" / "subgroup_testing.txt"
    test_list.write_text(test_list.read_text() + "patient0999\n")
    listed = set(sum(((nifti_copy / "database_split" / f"subgroup_{s}.txt").read_text().split()
                      for s in ("training", "validation", "testing")), []))
    src = CamusSource(nifti_copy)
    split = src.official_split(["patient0001", "patient0002", "patient0077"])
    assert split.method == "official:database_split"
    assert any("patient0999" in n for n in split.notes) and any("patient0077" in n for n in split.notes)
    assert {p for ids in split.patients.values() for p in ids} == {"patient0001", "patient0002"} & listed


@pytest.mark.parametrize("fold", [None, 2, 10])
def test_mhd_folds(camus_mhd: Path, tmp_path: Path, fold: int | None) -> None:
    out = convert_store(camus_mhd, tmp_path / "f.h5", size=32, views="2CH", fold=fold)
    assert validate_store(out) == []
    k = fold or 1
    with h5py.File(out) as f:
        assert f["splits"].attrs["method"] == f"official:listSubGroups/subGroup{k}"
    got = _split_patients(out)
    for name, file in (("train", "training"), ("valid", "validation"), ("test", "testing")):
        listed = (camus_mhd / "listSubGroups" / f"subGroup{k}_{file}.txt").read_text().split()
        assert got[name] == sorted(listed)


def test_fold_errors(camus_mhd: Path, camus_nifti: Path) -> None:
    with pytest.raises(DatakitError, match="no lists for fold 11"):
        CamusSource(camus_mhd, fold=11)
    with pytest.raises(DatakitError, match="database_split: --fold needs"):
        CamusSource(camus_nifti, fold=1)
    assert find_official_split(camus_nifti / "database_nifti" / "patient0001", None).name == "database_split"


def test_missing_split_list_is_named(nifti_copy: Path) -> None:
    gone = nifti_copy / "database_split" / "subgroup_validation.txt"
    gone.unlink()
    with pytest.raises(DatakitError, match="official split list not found") as e:
        CamusSource(nifti_copy)
    assert e.value.where == str(gone)


def test_no_split_folder_stratifies_on_image_quality(camus_nifti: Path, tmp_path: Path) -> None:
    root = tmp_path / "patients"
    shutil.copytree(camus_nifti / "database_nifti", root)
    src = CamusSource(root)
    assert src.official_lists is None and src.default_split() == "stratified"
    out = convert_store(root, tmp_path / "s.h5", size=32)
    with h5py.File(out) as f:
        assert f["splits"].attrs["method"] == "stratified:image_quality"
    with pytest.raises(DatakitError, match="no database_split/ or listSubGroups/"):
        convert_store(root, tmp_path / "o.h5", size=32, split="official")
    assert not (tmp_path / "o.h5").exists()
