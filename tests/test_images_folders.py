"""Folder traversal: hidden names skipped, folder links followed once, the run's own outputs left out,
a deterministic order, and names that stay unique across sub-folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mambast import UserError
from mambast.images import list_images, relative_names

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")  # list_images goes by name; reading is load_image's job


def _rel(files, root) -> list[str]:
    return [p.as_posix() for p in relative_names(files, root)]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _touch(tmp_path, "a.jpg", "._a.jpg", ".hidden.png", ".ipynb_checkpoints/a-checkpoint.png",
           ".git/x.png", "sub/b.png", "sub/._b.png", "__MACOSX/sub/._b.png", "sub/.cache/c.png")
    assert _rel(list_images(tmp_path), tmp_path) == ["a.jpg", "sub/b.png"]
    # a hidden file named explicitly, or a root below a hidden folder, is still read
    assert list_images(tmp_path / "._a.jpg") == [tmp_path / "._a.jpg"]
    assert _rel(list_images(tmp_path / ".ipynb_checkpoints"), tmp_path / ".ipynb_checkpoints") == [
        "a-checkpoint.png"]


def test_only_hidden_images_is_a_folder_with_no_images(tmp_path):
    _touch(tmp_path, "._a.jpg", ".b.png")
    with pytest.raises(UserError, match="holds no images"):
        list_images(tmp_path)


@needs_symlinks
def test_folder_links_are_followed(tmp_path):
    _touch(tmp_path / "elsewhere", "x.png", "deep/y.png")
    (tmp_path / "content").mkdir()
    _touch(tmp_path / "content", "a.png")
    (tmp_path / "content" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    os.symlink(tmp_path / "elsewhere" / "x.png", tmp_path / "content" / "file-link.png")
    os.symlink(tmp_path / "missing.png", tmp_path / "content" / "broken.png")  # a dangling link: skipped
    files = list_images(tmp_path / "content")
    assert _rel(files, tmp_path / "content") == ["a.png", "file-link.png", "linked/deep/y.png", "linked/x.png"]
    assert all(str(f).startswith(str(tmp_path / "content")) for f in files)  # spelled below the root


@needs_symlinks
def test_link_loops_and_second_links_are_entered_once(tmp_path):
    root = tmp_path / "root"
    _touch(root, "a.png", "sub/b.png")
    _touch(tmp_path, "outside/c.png")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # a loop to the root
    (root / "again").symlink_to(root / "sub", target_is_directory=True)  # a second way into sub
    (root / "self").symlink_to(root / "self")  # a link to itself
    (root / "sub" / "zz").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "aa").symlink_to(tmp_path / "outside", target_is_directory=True)
    # sub is listed by its own path, not through "again"; outside (reached only by links) by the first link
    assert _rel(list_images(root), root) == ["a.png", "aa/c.png", "sub/b.png"]


def test_exclude_leaves_out_the_runs_own_outputs(tmp_path):
    _touch(tmp_path, "a.png", "sub/b.png", "out/a_stylized_b.png", "out/nested/c.png", "sub/keep.png")
    assert _rel(list_images(tmp_path, exclude=tmp_path / "out"), tmp_path) == ["a.png", "sub/b.png",
                                                                                "sub/keep.png"]
    # several paths, files among them; relative spellings and paths that do not exist yet are fine
    ex = [tmp_path / "out", tmp_path / "sub" / "keep.png", tmp_path / "not-yet"]
    assert _rel(list_images(tmp_path, exclude=ex), tmp_path) == ["a.png", "sub/b.png"]
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert _rel(list_images(".", exclude="out"), ".") == ["a.png", "sub/b.png", "sub/keep.png"]
    finally:
        os.chdir(cwd)
    # the root (or a folder above it) is never excluded: outputs written beside the inputs are named as files
    assert len(list_images(tmp_path / "out", exclude=tmp_path / "out")) == 2
    assert len(list_images(tmp_path / "out", exclude=[tmp_path, tmp_path / "out" / "a_stylized_b.png"])) == 1


@needs_symlinks
def test_exclude_holds_through_links(tmp_path):
    _touch(tmp_path, "in/a.png", "in/out/x_stylized_y.png")
    (tmp_path / "in" / "view").symlink_to(tmp_path / "in" / "out", target_is_directory=True)
    os.symlink(tmp_path / "in" / "out" / "x_stylized_y.png", tmp_path / "in" / "link.png")
    assert _rel(list_images(tmp_path / "in", exclude=tmp_path / "in" / "out"), tmp_path / "in") == ["a.png"]


def test_order_is_deterministic_and_names_unique(tmp_path):
    names = ["b/cat.jpg", "a/cat.jpg", "cat.png", "cat.jpg", "A.png", "a/z/cat.jpg", "b.png"]
    _touch(tmp_path, *names)
    files = list_images(tmp_path)
    assert files == sorted(files)
    rel = _rel(files, tmp_path)
    assert rel == ["A.png", "a/cat.jpg", "a/z/cat.jpg", "b/cat.jpg", "b.png", "cat.jpg", "cat.png"]  # by parts
    assert len(set(rel)) == len(rel)  # the three cat.jpg stay apart
    assert _rel(list_images(tmp_path / "a" / "cat.jpg"), tmp_path / "a" / "cat.jpg") == ["cat.jpg"]
    with pytest.raises(ValueError, match="not below root"):
        relative_names([tmp_path / "a" / "cat.jpg"], tmp_path / "b")


def test_not_a_folder(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserError, match="neither a file nor a folder"):
        list_images(tmp_path / "pipe")


def test_image_folder_names_the_setting_and_the_cli_its_flag(tmp_path, capsys):
    """One check of a "folder of images" setting (mambast.images.image_folder): FieldError naming the field;
    the CLI spells the field as its flag, but not where the same word is part of a path (before, `mambast
    stylize-dataset` checked the folders itself, and the flag spelling reached into paths: .../--content)."""
    from mambast.cli import main
    from mambast.errors import FieldError
    from mambast.images import image_folder

    _touch(tmp_path, "content/a.png", "content/b/c.jpg", "style/s.png")
    (tmp_path / "empty").mkdir()
    assert _rel(image_folder(tmp_path / "content", "content"), tmp_path / "content") == ["a.png", "b/c.jpg"]
    for folder, message in [(None, "no content given (a folder of images)"),
                            (tmp_path / "nothing", f"content {tmp_path / 'nothing'}: no such folder"),
                            (tmp_path / "content" / "a.png", f"content {tmp_path / 'content' / 'a.png'}: not a folder"),
                            (tmp_path / "empty", f"content: {tmp_path / 'empty'}: folder holds no images")]:
        with pytest.raises(FieldError) as e:
            image_folder(folder, "content")
        assert str(e.value).startswith(message) and e.value.fields == ("content",)
    missing = tmp_path / "content" / "style"
    code = main(["stylize-dataset", "--content", str(missing), "--style", str(tmp_path / "style"), "--output",
                 str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert code == 2
    assert capsys.readouterr().err == f"mambast: error: stylize-dataset: --content {missing}: no such folder\n"
