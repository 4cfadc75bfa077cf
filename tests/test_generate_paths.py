"""Path safety: no user id, persona or odd text can place a file outside --outdir."""
from __future__ import annotations

import os

import pytest

from generate.paths import UnsafePathError, child_dir, ensure_inside, safe_name

HOSTILE = ["../../x", "..", ".", "", "/etc/passwd", "a/b", "a\\b", "..\\..\\win", "~root", "CON", "nul.txt",
           "name\x00null", "tab\tnew\nline", "😀 emoji", "ユーザー", " spaces ", "-rf", ".hidden", "x" * 5000,
           "%2e%2e%2fx", "a:b*c?d\"e<f>g|h"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_ids_stay_inside(tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    folder = child_dir(out, text)
    assert folder.parent == out.resolve()
    name = folder.name
    assert name and not name.startswith(".") and len(name) <= 80
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name), name
    (folder / "clip.mp4").write_bytes(b"x")  # really writable, really inside
    assert os.path.commonpath([out.resolve(), (folder / "clip.mp4").resolve()]) == str(out.resolve())


def test_safe_ids_are_kept_and_distinct_ids_stay_distinct():
    assert safe_name("u0042") == "u0042"
    assert safe_name("user_7.b-2") == "user_7.b-2"
    names = {safe_name(t) for t in ["a/b", "a_b", "a b", "a\\b", "a?b"]}
    assert len(names) == 5  # hash suffix keeps different ids apart
    # stable across runs and machines (it names folders on disk): pinned values, not a second call
    assert (safe_name("a/b"), safe_name("a b")) == ("a_b-c14cddc033", "a_b-c8687a08aa")


def test_symlink_escape_is_refused(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "u1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="not inside the output folder"):
        child_dir(out, "u1")
    with pytest.raises(UnsafePathError):
        ensure_inside(out, out / ".." / "outside" / "f")
    with pytest.raises(UnsafePathError):
        ensure_inside(out, out)  # the root itself is not a user folder


@pytest.mark.parametrize("planted", [".staging", ".slot", "runs", ".lock"])
def test_run_folders_refuse_a_planted_symlink_before_creating_anything(tmp_path, planted):
    """A link planted where a run folder (or its lock) would go is refused before anything is created through it:
    the target outside stays empty (or absent), and the error names the link."""
    from evaluation.slot.version import SlotVersion
    from generate.publish import RunFolder

    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    target = outside / "lockfile" if planted == ".lock" else outside
    (out / planted).symlink_to(target)
    with pytest.raises(UnsafePathError, match="symlink|not inside the output folder"):
        if planted == "runs":   # runs/ is made when a run publishes
            with RunFolder(out) as run:
                (run.staging / "clip.mp4").write_bytes(b"x")
                run.publish({"command": "test"}, [])
        else:
            with (SlotVersion(out) if planted == ".slot" else RunFolder(out)):
                pass
    assert list(outside.iterdir()) == []    # nothing made outside: no run folder, no lock file
    assert not (out / ".staging").is_dir() or not any((out / ".staging").iterdir())   # the refused run left nothing
