"""Execute papermill notebooks with checked parameters, in the kernel that runs this interpreter."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .records import (
    METRICS_FILE,
    PARAMS_FILE,
    STATUS_FILE,
    _error_record,
    _jsonable,
    _now,
    _read_json,
    _write_json,
)


NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def notebook_path(name: str | os.PathLike) -> Path:
    """Resolve ``"train"`` / ``"train.ipynb"`` to ``notebooks/train.ipynb``; a path to an .ipynb is kept."""
    candidate = Path(name)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate.resolve()
    stem = candidate.name[:-6] if candidate.name.endswith(".ipynb") else candidate.name
    path = NOTEBOOKS_DIR / f"{stem}.ipynb"
    if not path.exists():
        available = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {name!r}: not a file and not in {NOTEBOOKS_DIR} (available: {available})")
    return path


def notebook_parameters(name: str | os.PathLike) -> dict[str, dict]:
    """The notebook's ``parameters`` cell as papermill reads it: name -> {default, inferred_type_name, help}."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook_path(name))))


def check_parameters(name: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """Raise ValueError for parameters the notebook does not declare (papermill would only warn)."""
    valid = notebook_parameters(name)
    unknown = sorted(set(parameters) - set(valid))
    if unknown:
        listing = "\n".join(
            f"  {key} = {spec['default']}"
            + (f"  ({spec['inferred_type_name']})" if spec["inferred_type_name"] not in (None, "None") else "")
            + (f"  # {spec['help']}" if spec["help"] else "")
            for key, spec in valid.items()
        )
        raise ValueError(
            f"unknown parameter(s) {unknown} for notebook {notebook_path(name).name}; valid parameters:\n{listing}"
        )


def _runs_this_interpreter(argv0: str) -> bool:
    # jupyter_client replaces a bare "python"/"python3" argv[0] with the launching interpreter.
    if argv0 in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return True
    try:
        return Path(argv0).parent.resolve() == Path(sys.executable).parent.resolve()
    except OSError:
        return False


def resolve_kernel_name(kernel_name: str | None = None) -> str:
    """The kernel papermill should use: the given one, else "reidlab" (``make install``) or "python3",
    whichever runs this very interpreter (so notebooks see the same installed reidlab)."""
    if kernel_name:
        return kernel_name
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    for name in ("reidlab", "python3"):
        try:
            spec = manager.get_kernel_spec(name)
        except NoSuchKernel:
            continue
        if spec.argv and _runs_this_interpreter(spec.argv[0]):
            return name
    raise RuntimeError(
        f"no Jupyter kernel runs {sys.executable}; install one with "
        f"`{sys.executable} -m ipykernel install --sys-prefix --name reidlab` or pass kernel_name="
    )



def run_notebook(
    name: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike = "reports/run",
    kernel_name: str | None = None,
    timeout: float | None = None,
    log_output: bool = False,
    progress_bar: bool = False,
    stdout: Any = None,
) -> dict:
    """Execute a notebook with papermill into ``output_dir/<name>.ipynb`` and return the run record.

    ``output_dir`` is passed to the notebook as its ``output_dir`` parameter (when it declares one) and is
    the kernel's working directory. ``status.json`` records ok/failed; on failure the papermill error is
    re-raised after the partially executed notebook (with its error cell) has been saved. ``stdout``: a
    file-like object that receives the kernel's printed output as it runs (progress of long notebooks).
    """
    import papermill

    source = notebook_path(name)
    parameters = dict(parameters or {})
    check_parameters(source, parameters)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "output_dir" in notebook_parameters(source):
        parameters.setdefault("output_dir", str(out))
    executed = out / source.name
    _write_json(out / PARAMS_FILE, {"notebook": source.stem, "parameters": parameters})
    status = {"status": "running", "notebook": executed.name, "started": _now()}
    _write_json(out / STATUS_FILE, status)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=_jsonable(parameters),
            kernel_name=resolve_kernel_name(kernel_name),
            execution_timeout=timeout,
            log_output=log_output,
            progress_bar=progress_bar,
            stdout_file=stdout,
            cwd=str(out),
        )
    except BaseException as exc:
        status.update(status="failed", finished=_now(), duration_s=round(time.perf_counter() - start, 2))
        status.update(_error_record(exc))
        _write_json(out / STATUS_FILE, status)
        raise
    status.update(status="ok", finished=_now(), duration_s=round(time.perf_counter() - start, 2))
    _write_json(out / STATUS_FILE, status)
    return {**status, "output_dir": str(out), "metrics": _read_json(out / METRICS_FILE)}

