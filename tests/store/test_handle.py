"""LazyFile: the store's handle across pickling and forks."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np

from datakit.store import Store
from datakit.store.handle import LazyFile


def test_reader_survives_pickling_into_another_process(store) -> None:
    import pickle

    path, samples = store
    s = Store(path)
    _ = s[0]
    clone = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(clone[3]["mask"], samples[3].mask)



def _mask_in_child(handle: LazyFile, queue: mp.Queue) -> None:
    queue.put((handle.is_open, handle.reader("masks").read(3).tolist()))


def test_a_forked_process_opens_its_own_handle(store) -> None:
    """The parent's open handle is inherited by a fork but never used there: the child opens its own, and
    the parent's keeps working after the child is gone."""
    path, samples = store
    h = LazyFile(path)
    assert not h.is_open  # nothing opened until the first read
    np.testing.assert_array_equal(h.reader("masks").read(1), samples[1].mask)
    assert h.is_open
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_mask_in_child, args=(h, queue))
    child.start()
    was_open, mask = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and not was_open  # the inherited handle did not count as the child's
    assert mask == samples[3].mask.tolist()
    np.testing.assert_array_equal(h.reader("masks").read(2), samples[2].mask)
    h.close()
    assert not h.is_open
    assert not pickle.loads(pickle.dumps(LazyFile(path))).is_open
