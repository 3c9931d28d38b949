"""The language detector's model, kept decompressed in the user's cache directory: a crawl
maps the copy (0.01 s of CPU, not 0.8), which must detect exactly as the bundled model does;
a damaged or unwritable copy is no error."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from normalize.language_model import load_identifier

TEXTS = [
    "The committee approved the budget on Tuesday after a long debate about school funding.",
    "Der Ausschuss hat den Haushalt am Dienstag nach einer langen Debatte gebilligt.",
    "Le comité a approuvé le budget mardi après un long débat sur le financement des écoles.",
    "委员会在周二经过长时间辩论后批准了预算。",
    "Комитет одобрил бюджет во вторник после долгих дебатов.",
    "Komite, okul finansmanı hakkındaki uzun bir tartışmanın ardından bütçeyi onayladı.",
]


@pytest.fixture(scope="module")
def bundled():
    return load_identifier(None)


def detections(identifier) -> list[tuple[str, float]]:
    return [identifier.classify(text) for text in TEXTS]


def _stamps(copy):
    return {f.name: (f.stat().st_mtime_ns, f.stat().st_size) for f in copy.iterdir()}


def test_the_copy_is_made_once_and_detects_as_the_bundled_model(tmp_path, bundled):
    first = load_identifier(tmp_path)  # no copy yet: from the bundled model, then kept
    (copy,) = tmp_path.iterdir()
    assert copy.is_dir() and sum(size for _, size in _stamps(copy).values()) > 10_000_000
    made = _stamps(copy)
    second = load_identifier(tmp_path)  # from the copy, which is left as it is
    assert _stamps(copy) == made and list(tmp_path.iterdir()) == [copy]
    assert detections(second) == detections(first) == detections(bundled)
    assert [lang for lang, _ in detections(second)] == ["en", "de", "fr", "zh", "ru", "tr"]
    # Mapped, not read: the automaton is the file's pages, not a copy in this process.
    assert isinstance(second.tk_nextmove, memoryview) and isinstance(second.nb_ptc, np.memmap)


def test_a_damaged_copy_is_replaced_with_a_warning(tmp_path, bundled, caplog):
    load_identifier(tmp_path)
    (copy,) = tmp_path.iterdir()
    table = copy / "nb_ptc.npy"
    table.write_bytes(table.read_bytes()[:1000])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, logger="normalize.language_model"):
        again = load_identifier(tmp_path)
    assert "unreadable" in caplog.text
    assert detections(again) == detections(bundled)
    assert detections(load_identifier(tmp_path)) == detections(bundled)  # the copy is whole
    assert [p.name for p in tmp_path.iterdir()] == [copy.name]  # no temporary file left
    assert table.stat().st_size > 10_000_000


def test_a_copy_missing_a_file_is_replaced(tmp_path, bundled):
    load_identifier(tmp_path)
    (copy,) = tmp_path.iterdir()
    (copy / "tk_nextmove.npy").unlink()
    assert detections(load_identifier(tmp_path)) == detections(bundled)
    assert [p.name for p in tmp_path.iterdir()] == [copy.name]
    assert (copy / "tk_nextmove.npy").exists()
    assert detections(load_identifier(tmp_path)) == detections(bundled)


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path, bundled, caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the directory would be")
    with caplog.at_level(logging.WARNING, logger="normalize.language_model"):
        identifier = load_identifier(blocked)
    assert "cannot keep a copy" in caplog.text
    assert detections(identifier) == detections(bundled)


def test_copies_of_other_versions_and_temporaries_left_by_a_killed_writer_are_removed(tmp_path):
    older = tmp_path / "py3langid-0.3.0-4000000"  # a copy an earlier py3langid made
    older.mkdir()
    (older / "nb_ptc.npy").write_bytes(b"old model")
    single = tmp_path / "py3langid-0.4.0-4586720.npz"  # the single-file copy of before
    single.write_bytes(b"old format")
    left = tmp_path / ".py3langid-0.4.0-4586720.k1ll3d"  # a writer killed an hour ago
    left.mkdir()
    (left / "nb_ptc.npy").write_bytes(b"half a model")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    writing = tmp_path / ".py3langid-0.4.0-4586720.wr1t1n"  # another crawl, writing now
    writing.mkdir()
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("not ours")
    load_identifier(tmp_path)
    (copy,) = [p for p in tmp_path.glob("py3langid-*") if p.is_dir()]
    assert copy != older
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [copy.name, writing.name, unrelated.name])
