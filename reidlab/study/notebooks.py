"""Execute papermill notebooks with checked parameters, in the kernel that runs this interpreter."""

from __future__ import annotations

import ast
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .io import error_record, jsonable, read_json, utc_now, write_json
from .records import PARAMS_FILE, STATUS_FILE, run_folder, run_record


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


def default_output_dir(name: str | os.PathLike) -> Path:
    """Where a notebook writes when its ``output_dir`` parameter is None: ``<repo root>/runs/<name>``.

    The repository root is the folder above ``notebooks/``, so the answer does not depend on the kernel's
    working directory (JupyterLab starts kernels in ``notebooks/``). When reidlab is installed without its
    notebooks folder, ``./runs/<name>`` under the current directory.
    """
    stem = Path(name).name.removesuffix(".ipynb")
    return _repository_root() / "runs" / stem


def _repository_root() -> Path:
    # The folder above notebooks/; without it (reidlab installed without its notebooks) the current directory.
    return NOTEBOOKS_DIR.parent if NOTEBOOKS_DIR.is_dir() else Path.cwd()


def default_data_root(config_root: str | os.PathLike | None) -> str | None:
    """The dataset folder a notebook uses when its ``data_root`` parameter is None: the config's ``data.root``
    (the preset's, or an override's), a relative one resolved against the repository root.

    Without this a relative root such as synth_cpu's ``data/synthreid`` would resolve against the kernel's
    working directory: ``notebooks/`` in JupyterLab, the output folder under papermill, so SynthReID would be
    generated there. An absolute root is kept; None (a preset that needs ``data_root``) stays None. When
    reidlab is installed without its notebooks folder, a relative root is resolved against the current directory.
    """
    if config_root is None:
        return None
    path = Path(config_root).expanduser()
    return str(path if path.is_absolute() else _repository_root() / path)


def parameter_defaults(name: str | os.PathLike) -> dict[str, Any]:
    """The notebook's parameter defaults as Python values (papermill gives their source text)."""
    defaults = {}
    for key, spec in notebook_parameters(name).items():
        try:
            defaults[key] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):  # an expression, not a literal: its type cannot be checked
            defaults[key] = None
    return defaults


_CHECKED_TYPES = (bool, int, float, list, dict)


def _expected_type(default: Any) -> type | None:
    for kind in _CHECKED_TYPES:  # bool before int: True is an int too
        if isinstance(default, kind):
            return kind
    if isinstance(default, tuple):
        return list
    return None


def _has_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, Mapping)


def check_notebook_parameters(namespace: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``defaults`` found in ``namespace``, type-checked against their defaults.

    A parameter whose default is a bool, int, float, list or dict must get a value of that type (an int is
    accepted for a float). A string given for it (papermill's ``-p seeds "[0]"`` passes the text) is read
    as YAML first, so ``"[0]"`` becomes ``[0]``. A parameter whose default is None or a string accepts any
    value; for a None default, text that reads as a YAML list or dict (``seeds = None`` given ``"[0, 1]"``)
    becomes that list or dict, and any other text (a path) stays as it is. Raises ValueError naming the parameter, the value and the expected type.
    """
    import yaml

    checked = {}
    for key, default in defaults.items():
        if key not in namespace:
            continue
        value = namespace[key]
        kind = _expected_type(default)
        if default is None and isinstance(value, str):  # only list / dict text is converted
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = None
            value = parsed if isinstance(parsed, (list, dict)) else value
        elif kind is not None and isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as error:
                raise ValueError(f"parameter {key}={namespace[key]!r} is not valid YAML for a {kind.__name__} "
                                 f"(default {default!r}): {str(error).splitlines()[0]}") from None
        if kind is not None and not _has_type(value, kind):
            expected = {bool: "a bool (true/false)", int: "an int", float: "a number (int or float)",
                        list: "a list", dict: "a dict"}[kind]
            got = type(value).__name__ + (f" {value!r} (read as YAML)" if isinstance(namespace[key], str) else "")
            raise ValueError(f"parameter {key}={namespace[key]!r} must be {expected} like its default {default!r}; "
                             f"got {got}")
        checked[key] = value
    return checked


def _defaults_in_kernel(name: str) -> dict[str, Any] | None:
    try:
        return parameter_defaults(name)
    except FileNotFoundError:  # reidlab installed without notebooks/: the notebook may sit in the kernel's folder
        local = Path.cwd() / f"{Path(name).name.removesuffix('.ipynb')}.ipynb"
        return parameter_defaults(local) if local.is_file() else None


def notebook_arguments(name: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """A notebook's parameters as its code should use them; call it right after the parameters cell::

        globals().update(notebook_arguments("train", globals()))

    Checks their types against the notebook's defaults (:func:`check_notebook_parameters`: YAML text such
    as ``"[0]"`` from ``papermill -p`` becomes a list) and turns ``output_dir = None`` into
    :func:`default_output_dir` (``<repo root>/runs/<name>``).
    """
    defaults = _defaults_in_kernel(name)
    if defaults is None:
        warnings.warn(f"notebook {name!r} not found: its parameters are used without type checks", stacklevel=2)
        arguments = {}
    else:
        arguments = check_notebook_parameters(namespace, defaults)
    if namespace.get("output_dir", "") is None:
        arguments["output_dir"] = str(default_output_dir(name))
    return arguments


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
    status_fields: Mapping[str, Any] | None = None,
) -> dict:
    """Execute a notebook with papermill into ``output_dir/<name>.ipynb`` and return the run record.

    ``output_dir`` is passed to the notebook as its ``output_dir`` parameter (when it declares one) and is
    the kernel's working directory. ``status.json`` records ok/failed; on failure the papermill error is
    re-raised after the partially executed notebook (with its error cell) has been saved. ``stdout``: a
    file-like object that receives the kernel's printed output as it runs (progress of long notebooks).
    ``status_fields``: more to record in ``status.json`` (a sweep's SLURM job).
    """
    import papermill

    source = notebook_path(name)
    parameters = dict(parameters or {})
    check_parameters(source, parameters)
    parameters.update(check_notebook_parameters(parameters, parameter_defaults(source)))
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "output_dir" in notebook_parameters(source):
        parameters.setdefault("output_dir", str(out))
    executed = out / source.name
    write_json(out / PARAMS_FILE, run_record(source, parameters))
    status = {"status": "running", "notebook": executed.name, "started": utc_now(), **(status_fields or {})}
    write_json(out / STATUS_FILE, status)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=jsonable(parameters),
            kernel_name=resolve_kernel_name(kernel_name),
            execution_timeout=timeout,
            log_output=log_output,
            progress_bar=progress_bar,
            stdout_file=stdout,
            cwd=str(out),
        )
    except BaseException as exc:
        status.update(status="failed", finished=utc_now(), duration_s=round(time.perf_counter() - start, 2))
        status.update(error_record(exc))
        write_json(out / STATUS_FILE, status)
        raise
    status.update(status="ok", finished=utc_now(), duration_s=round(time.perf_counter() - start, 2))
    write_json(out / STATUS_FILE, status)
    return {**status, "output_dir": str(out), "metrics": read_json(run_folder(out).metrics_path)}

