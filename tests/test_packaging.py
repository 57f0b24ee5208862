"""Packaging: one import namespace `depthscope`, never bare top-level names like `models`.

The subpackages live in the top-level folders models/, probe/, analyses/, dashboard/ but must install only as
depthscope.models, depthscope.probe, ... (see pyproject.toml). These tests build the real wheel, install it into a
temporary folder and import it from a fresh interpreter, check the editable install used for development, check a
user's own `models` package is not shadowed, and run the console script.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Source folder -> import name it must be installed as.
SUBPACKAGE_DIRS = {
    "depthscope": "depthscope",
    "models": "depthscope.models",
    "probe": "depthscope.probe",
    "analyses": "depthscope.analyses",
    "dashboard": "depthscope.dashboard",
}
PUBLIC_SUBPACKAGES = ["depthscope.models", "depthscope.probe", "depthscope.analyses", "depthscope.dashboard"]
BARE_NAMES = ["models", "probe", "analyses", "dashboard", "tests", "bench", "assets"]

# Only at the top of the checkout: what a build must not see (virtualenv, VCS, previous build outputs, data).
_ROOT_EXCLUDES = {".venv", ".git", "build", "dist", "out", "runs", ".pytest_cache"}


def _ignore(src: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or n.endswith(".pyc")}
    if Path(src).resolve() == REPO_ROOT:
        ignored |= _ROOT_EXCLUDES & set(names)
    return ignored


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"command failed with exit code {proc.returncode}: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def _python(code: str, *, cwd: Path, env: dict[str, str]) -> dict:
    """Run `code` in a fresh interpreter; it must print one JSON object as its last line."""
    proc = _run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the checkout (so stale build/ folders cannot leak into it), offline."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO_ROOT, src, ignore=_ignore)
    outdir = base / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir), str(src)],
         cwd=base, env=env, timeout=600)
    wheels = sorted(outdir.glob("depthscope-*.whl"))
    assert len(wheels) == 1, f"expected one depthscope wheel in {outdir}, found {[w.name for w in wheels]}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_target(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed with --no-deps into a temporary folder (dependencies come from the venv)."""
    target = tmp_path_factory.mktemp("target")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "--quiet",
          "--target", str(target), str(wheel)], cwd=target, env=env)
    return target


def _wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_top_level_is_only_depthscope(wheel: Path) -> None:
    names = _wheel_names(wheel)
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"depthscope"}, f"{wheel.name} installs top-level names {sorted(top)}; only 'depthscope' is allowed"
    for bare in BARE_NAMES:
        assert not any(n.startswith(bare + "/") for n in names), f"{wheel.name} contains a bare '{bare}/' folder"
    top_level_txt = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level_txt:
        with zipfile.ZipFile(wheel) as zf:
            listed = zf.read(top_level_txt[0]).decode().split()
        assert listed == ["depthscope"], f"top_level.txt lists {listed}"


def test_wheel_contains_every_source_subpackage(wheel: Path) -> None:
    """A subpackage added to the source tree but not to pyproject.toml's `packages` would silently go missing."""
    names = set(_wheel_names(wheel))
    missing = []
    for folder, dotted in SUBPACKAGE_DIRS.items():
        root = REPO_ROOT / folder
        for py in sorted(root.rglob("*.py")):
            if "__pycache__" in py.parts:
                continue
            wheel_path = "/".join([*dotted.split("."), *py.relative_to(root).parts])
            if wheel_path not in names:
                hint = "give its folder an __init__.py and list the package in pyproject.toml's `packages`"
                missing.append(f"{py.relative_to(REPO_ROOT)} (expected {wheel_path}; {hint})")
    assert not missing, "files missing from the wheel:\n  " + "\n  ".join(missing)


def test_wheel_carries_the_dashboard_stylesheet_and_the_run_schema(wheel: Path) -> None:
    names = set(_wheel_names(wheel))
    assert "depthscope/dashboard/assets/style.css" in names
    assert "depthscope/probe/SCHEMA.md" in names


def test_wheel_console_script_target_is_packaged(wheel: Path) -> None:
    names = _wheel_names(wheel)
    eps = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert eps, f"{wheel.name} has no entry_points.txt (console script `depthscope` missing)"
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(eps[0]).decode()
    line = next((ln for ln in text.splitlines() if ln.replace(" ", "").startswith("depthscope=")), None)
    assert line is not None, f"no `depthscope` console script in entry_points.txt:\n{text}"
    module = line.split("=", 1)[1].strip().split(":", 1)[0]
    assert module.replace(".", "/") + ".py" in names, f"console script points at {module}, which is not in the wheel"


def test_installed_wheel_imports_from_target(wheel_target: Path, tmp_path: Path, clean_env: dict[str, str]) -> None:
    env = dict(clean_env, PYTHONPATH=str(wheel_target))
    out = _python(
        f"""
        import importlib, json
        mods = {{name: importlib.import_module(name).__file__ for name in {PUBLIC_SUBPACKAGES!r}}}
        import depthscope
        mods["depthscope"] = depthscope.__file__
        print(json.dumps(mods))
        """,
        cwd=tmp_path, env=env,
    )
    target = wheel_target.resolve()
    for name, file in out.items():
        assert file is not None, f"{name} imported as a namespace package (no __init__.py in the wheel)"
        assert Path(file).resolve().is_relative_to(target), f"{name} came from {file}, not from the wheel at {target}"


def test_every_module_imports_from_the_installed_wheel(
    wheel_target: Path, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Code that only works from the checkout (e.g. `import models`, data read from beside the sources) fails here."""
    env = dict(clean_env, PYTHONPATH=str(wheel_target))
    out = _python(
        """
        import importlib, json, pkgutil, traceback
        import depthscope
        failed, imported = {}, []
        for info in pkgutil.walk_packages(depthscope.__path__, "depthscope.", onerror=lambda name: None):
            try:
                module = importlib.import_module(info.name)
                imported.append([info.name, module.__file__])
            except BaseException as err:  # noqa: BLE001 - report every failure, keep going
                failed[info.name] = "".join(traceback.format_exception_only(type(err), err)).strip()
        print(json.dumps({"failed": failed, "imported": imported}))
        """,
        cwd=tmp_path, env=env,
    )
    assert not out["failed"], "modules that do not import from the installed wheel:\n" + "\n".join(
        f"  {name}: {err}" for name, err in out["failed"].items())
    target = wheel_target.resolve()
    outside = [name for name, file in out["imported"] if file and not Path(file).resolve().is_relative_to(target)]
    assert not outside, f"imported from outside the wheel: {outside}"
    assert len(out["imported"]) >= 5


def test_installed_wheel_has_no_bare_names(wheel_target: Path) -> None:
    present = sorted(p.name for p in wheel_target.iterdir() if p.name in BARE_NAMES)
    assert not present, f"installing the wheel created bare top-level names: {present}"


def test_editable_install_exposes_only_the_namespace(tmp_path: Path, clean_env: dict[str, str]) -> None:
    out = _python(
        f"""
        import importlib, importlib.util, json
        res = {{}}
        try:
            import models
            res["models"] = models.__file__
        except ModuleNotFoundError:
            res["models"] = None
        specs = {{n: importlib.util.find_spec(n) for n in ("probe", "analyses", "dashboard", "bench")}}
        res["bare"] = {{n: spec and str(spec.origin or spec.submodule_search_locations) for n, spec in specs.items()}}
        import depthscope.models
        res["depthscope.models"] = depthscope.models.__file__
        print(json.dumps(res))
        """,
        cwd=tmp_path, env=clean_env,
    )
    assert out["models"] is None, f"`import models` should fail outside the checkout, but found {out['models']}"
    leaked = {n: o for n, o in out["bare"].items() if o is not None}
    assert not leaked, f"bare top-level names are importable: {leaked}"
    assert Path(out["depthscope.models"]).resolve() == REPO_ROOT / "models" / "__init__.py", (
        f"depthscope.models came from {out['depthscope.models']}, not the editable checkout"
    )


@pytest.mark.parametrize("install", ["editable", "wheel"])
def test_users_own_models_package_is_not_shadowed(
    install: str, tmp_path: Path, clean_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    user = tmp_path / "userproject"
    (user / "models").mkdir(parents=True)
    (user / "models" / "__init__.py").write_text('MARKER = "the user\'s own models package"\n')
    env = dict(clean_env)
    if install == "wheel":
        env["PYTHONPATH"] = str(request.getfixturevalue("wheel_target"))
    for order in ("ours-first", "theirs-first"):
        first, second = ("import depthscope.models", "import models") if order == "ours-first" else (
            "import models", "import depthscope.models")
        out = _python(
            f"""
            import json
            {first}
            {second}
            print(json.dumps({{
                "marker": getattr(models, "MARKER", None),
                "models_file": models.__file__,
                "ours_file": depthscope.models.__file__,
                "ours_has_model": hasattr(depthscope.models, "DepthTransformer"),
                "same": models is depthscope.models,
            }}))
            """,
            cwd=user, env=env,
        )
        assert out["marker"] == "the user's own models package", f"[{install}, {order}] `import models` gave {out}"
        assert Path(out["models_file"]).resolve() == (user / "models" / "__init__.py").resolve()
        assert not out["same"] and out["ours_has_model"], f"[{install}, {order}] {out}"


def test_console_script_help_lists_train(tmp_path: Path, clean_env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "depthscope"
    if not script.exists():
        found = shutil.which("depthscope")
        assert found, f"console script `depthscope` is not installed (looked in {script.parent} and on PATH)"
        script = Path(found)
    proc = subprocess.run([str(script), "--help"], cwd=tmp_path, env=clean_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"`depthscope --help` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "train" in proc.stdout, f"`depthscope --help` does not list the `train` subcommand:\n{proc.stdout}"
