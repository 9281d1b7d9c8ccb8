"""The driver Python of the rehearsal: a virtualenv shaped like a Dataproc Serverless runtime, built from a pinned
requirement list and cached under ``.cache/runtime-envs/``.

The folder's name carries a hash of the requirement list and of the interpreter, so an edited list builds a new
environment, and worktrees sharing ``.cache`` never overwrite each other's. A build happens in a temporary folder
under a lock and is renamed into place when complete: a killed build leaves nothing that looks usable.

    python -m rehearsal.runtime_env --runtime 1.2     # build if needed, print the environment's python
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_DIR = Path(__file__).resolve().parent / "requirements"
DEFAULT_ROOT = Path(os.environ.get("RUNTIME_ENV_ROOT", REPO_ROOT / ".cache" / "runtime-envs")).resolve()
# Dataproc runtime version -> the Python its image ships (runtime 1.2 and 3.0: conda Python 3.12).
RUNTIME_PYTHON = {"1.2": "3.12", "3.0": "3.12"}
# Debian 12 has no python3.12 package: where no 3.12 is installed (pyenv or other), the nearest one is used
# and a warning says so.
_FALLBACK_PYTHONS = ("3.12", "3.11")


class RuntimeEnvError(RuntimeError):
    pass


def requirements_file(runtime: str) -> Path:
    path = REQUIREMENTS_DIR / f"dataproc-{runtime}.txt"
    if not path.exists():
        known = sorted(p.stem.removeprefix("dataproc-") for p in REQUIREMENTS_DIR.glob("dataproc-*.txt"))
        raise RuntimeEnvError(f"no requirement list for Dataproc runtime {runtime!r} ({path}); known: {known}")
    return path


def _candidates(version: str) -> list[str]:
    found = [shutil.which(f"python{version}")]
    # pyenv's shim answers for every version but runs only the selected one: look at its installs directly.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"), reverse=True)]
    return [f for f in found if f]


def _runs(python: str) -> bool:
    return subprocess.run([python, "-c", "import venv"], capture_output=True).returncode == 0


def interpreter(runtime: str) -> tuple[str, str]:
    """(python executable, its X.Y): the runtime's own Python version if installed, else the nearest one here."""
    wanted = RUNTIME_PYTHON.get(runtime, "3.12")
    for version in (wanted, *(v for v in _FALLBACK_PYTHONS if v != wanted)):
        for python in _candidates(version):
            if _runs(python):
                return python, version
    raise RuntimeEnvError(f"no python{wanted} (nor any of {_FALLBACK_PYTHONS}) found for the Dataproc rehearsal")


def env_dir(runtime: str, root: Path = DEFAULT_ROOT) -> Path:
    python, version = interpreter(runtime)
    digest = hashlib.sha256(requirements_file(runtime).read_bytes() + f"\n{python} {version}".encode()).hexdigest()
    return root / f"dataproc-{runtime}-py{version}-{digest[:12]}"


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def spark_submit_of(env: Path) -> Path:
    """The spark-submit of the environment's own pyspark (its Spark, not the project venv's)."""
    return env / "bin" / "spark-submit"


def ensure(runtime: str, root: Path = DEFAULT_ROOT, *, quiet: bool = True) -> Path:
    """Returns the environment folder of ``runtime``, building it first if it is not there."""
    target = env_dir(runtime, root)
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worktree may be building the same environment
        if (target / ".complete").exists():
            return target
        python, version = interpreter(runtime)
        wanted = RUNTIME_PYTHON.get(runtime, "3.12")
        if version != wanted:
            print(f"rehearsal: Dataproc runtime {runtime} runs Python {wanted}; building with {version}, the "
                  "nearest on this machine", file=sys.stderr)  # fmt: skip
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(partial)], check=True)
        pip = [str(partial / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        result = subprocess.run(
            [*pip, *(["--quiet"] if quiet else []), "--no-input", "-r", str(requirements_file(runtime))],
            capture_output=quiet,
            text=True,
        )
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeEnvError(
                f"could not build the Dataproc {runtime} rehearsal environment from {requirements_file(runtime)}:\n"
                f"{(result.stdout or '')[-2000:]}{(result.stderr or '')[-2000:]}"
            )
        # Built aside and renamed, then the scripts' shebangs (which name the build folder) rewritten: a build
        # killed half-way leaves only a .partial folder, and only the marker file makes an environment usable.
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        _fix_scripts(partial, target)
        (target / ".complete").write_text(requirements_file(runtime).read_text())
    return target


def _fix_scripts(old: Path, new: Path) -> None:
    """Rewrites the venv paths that ``venv``/pip wrote into bin/ (shebangs, activate) after the rename."""
    for script in (new / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except UnicodeDecodeError:
                continue
            if str(old) in text:
                script.write_text(text.replace(str(old), str(new)))
    config = new / "pyvenv.cfg"
    config.write_text(config.read_text().replace(str(old), str(new)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build (once) the Dataproc-runtime-shaped Python of the rehearsal.")
    parser.add_argument("--runtime", default="1.2", help="Dataproc Serverless runtime version (default 1.2)")
    args = parser.parse_args(argv)
    try:
        env = ensure(args.runtime, quiet=False)
    except RuntimeEnvError as error:
        raise SystemExit(str(error)) from None
    print(python_of(env))


if __name__ == "__main__":
    main()
