"""The local store's keys and writes under hostile keys and racing deletes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from renderkit.storage import StorageError
from renderkit.storage.local import LocalStorage


@pytest.mark.parametrize("key", ["a\x00b", "a\\..\\..\\x", "..\\x", "a/b\x1b[31m", "a/\x7f"])
def test_a_key_with_a_nul_a_backslash_or_a_control_character_is_refused(tmp_path: Path, key: str) -> None:
    """A NUL made put raise outside StorageError and leave its temporary file behind; backslashes
    were taken as part of a name (a review found both)."""
    storage = LocalStorage(str(tmp_path))
    with pytest.raises(StorageError, match="invalid storage key"):
        storage.put(key, b"data", "image/png")
    assert list(tmp_path.rglob("*")) == []


def test_a_write_that_fails_for_any_reason_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    with pytest.raises(TypeError):
        storage.put("renders/t/j/full.jpg", "not bytes", "image/jpeg")  # type: ignore[arg-type]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_two_deletes_of_one_prefix_at_once_both_succeed(tmp_path: Path) -> None:
    """The loser of the race raised FileNotFoundError naming the server's path (a review found it)."""
    storage = LocalStorage(str(tmp_path))
    for trial in range(30):
        for i in range(40):
            storage.put(f"uploads/job{trial}/part/{i}.bin", b"x", "application/octet-stream")
        errors: list[BaseException] = []

        def delete(prefix: str = f"uploads/job{trial}/", errors: list[BaseException] = errors) -> None:
            try:
                storage.delete_prefix(prefix)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=delete) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and not (tmp_path / "uploads" / f"job{trial}").exists()


def test_a_delete_the_filesystem_refuses_is_a_storage_error_naming_no_path(tmp_path: Path) -> None:
    """A read-only storage directory: the delete fails as StorageError (what callers catch; a bare
    OSError ended the asset sweep's round), and its message names the key, not the server's path."""
    storage = LocalStorage(tmp_path)
    storage.put("assets/t/a", b"x", "image/jpeg")

    class ReadOnly(type(tmp_path)):  # type: ignore[misc]
        def unlink(self, missing_ok: bool = False) -> None:
            raise OSError(30, "Read-only file system", str(self))

    where = storage.path
    storage.path = lambda key: ReadOnly(where(key))  # type: ignore[method-assign]  # this storage alone
    with pytest.raises(StorageError) as caught:
        storage.delete("assets/t/a")
    assert str(tmp_path) not in str(caught.value) and "assets/t/a" in str(caught.value)


def test_a_put_whose_folder_a_delete_removes_meanwhile_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete of a folder's last file removes the folder; a put into it (an upload of another of
    the tenant's assets while the sweep deletes one) failed 'No such file or directory' when that
    came between its mkdir and its temporary file."""
    import tempfile
    import types

    storage = LocalStorage(tmp_path)
    storage.put("assets/t1/a", b"a", "image/jpeg")
    mkstemp = tempfile.mkstemp
    raced: list[bool] = []

    def racing_mkstemp(**kwargs: object) -> tuple[int, str]:
        if not raced:
            raced.append(True)
            storage.delete("assets/t1/a")  # the folder's last file: the folder goes too
        return mkstemp(**kwargs)  # type: ignore[call-overload, no-any-return]

    # The storage module's own name for tempfile, not the tempfile module every thread shares.
    monkeypatch.setattr("renderkit.storage.local.tempfile", types.SimpleNamespace(mkstemp=racing_mkstemp))
    storage.put("assets/t1/b", b"b", "image/jpeg")
    assert storage.get("assets/t1/b") == b"b" and raced
