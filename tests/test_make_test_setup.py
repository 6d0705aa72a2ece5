"""`make test`'s browser check: chromium present, installable as root, or one line with the command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "ensure-chromium.sh"


def _bin(tmp_path: Path, uid: int, with_chromium: bool = False, with_apt: bool = False) -> Path:
    """A PATH folder with bash's few needs, a fake `id` saying ``uid``, and optional fakes."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "env"):
        os.symlink(shutil.which(tool), folder / tool)
    (folder / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    if with_chromium:
        (folder / "chromium").write_text(f"#!{shutil.which('bash')}\nexit 0\n")
    if with_apt:  # records what it was asked, "installs" chromium
        (folder / "apt-get").write_text(
            f"#!{shutil.which('bash')}\necho \"$@\" >> {tmp_path}/apt.log\n"
            f"[[ $1 == install ]] && printf '#!{shutil.which('bash')}\\nexit 0\\n' > {folder}/chromium && chmod +x {folder}/chromium\nexit 0\n"
        )
    for f in folder.iterdir():
        if not f.is_symlink():
            f.chmod(0o755)
    return folder


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env={"PATH": str(folder)}, capture_output=True, text=True, timeout=30)


def test_without_chromium_and_not_root_it_stops_at_once_with_the_command_to_run(tmp_path):
    done = _run(_bin(tmp_path, uid=1000))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error: the browser tests need Debian's chromium; run: sudo apt-get install chromium"]


def test_without_chromium_as_root_it_installs_chromium_with_apt(tmp_path):
    done = _run(_bin(tmp_path, uid=0, with_apt=True))
    assert done.returncode == 0, done.stderr
    assert "install -y -qq --no-install-recommends chromium" in (tmp_path / "apt.log").read_text()


def test_with_chromium_it_does_nothing(tmp_path):
    done = _run(_bin(tmp_path, uid=1000, with_chromium=True))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
