"""A real JupyterLab in Debian's Chromium, for tests of notebooks whose widgets only work in a browser.

The server runs offline from the venv with private config, runtime, settings and workspace folders, so the
user's JupyterLab state is neither read nor written; Chromium runs headless on a fresh profile through
Playwright (never ``playwright install``: the system browser is used).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# Settings of the private user settings folder: every cell attached to the DOM (the default windowing leaves
# off-screen cells half-rendered), and no news or update prompts over the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# The status bar's kernel of the current notebook, e.g. "Python (reidlab) | Idle": unlike the toolbar's execution
# indicator, which says idle before a kernel connects, it says Idle only once a kernel is connected and idle.
KERNEL_STATUS = '.jp-StatusBar-TextItem[title^="Change kernel for"]'
KERNEL_IDLE = f"""() => /^(?!No Kernel).+ \\| Idle$/.test(
    document.querySelector('{KERNEL_STATUS}')?.textContent.trim())"""
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'


def chromium_path() -> str | None:
    """Debian's Chromium, the only browser the tests use (nothing is downloaded)."""
    return str(CHROMIUM) if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK) else None


def require_chromium() -> None:
    """Skip without Chromium, except where REIDLAB_REQUIRE_BROWSER=1 (CI): there a missing browser fails."""
    if chromium_path() is None:
        message = f"no Chromium at {CHROMIUM}; install it with `apt-get install chromium`"
        if os.environ.get("REIDLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (REIDLAB_REQUIRE_BROWSER=1)")
        pytest.skip(message)


@dataclass(frozen=True)
class LabServer:
    """What a test needs of a running server: where it answers and the token it asks for."""

    url: str
    token: str

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}/lab/tree/{urllib.parse.quote(path)}?token={self.token}"


def log_tail(log: Path, chars: int = 4000) -> str:
    """The end of the server's log, where the reason of a failure usually is."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def free_port() -> int:
    """A port the system just had free (the server does not retry another: port_retries=0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(notebook_dir: Path, timeout_s: float = 60):
    """A JupyterLab server on a free local port, serving ``notebook_dir``; stopped with its kernels on exit."""
    state = Path(tempfile.mkdtemp(prefix="reidlab-lab-"))
    for plugin, settings in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        (state / "settings" / package).mkdir(parents=True, exist_ok=True)
        (state / "settings" / package / f"{name}.jupyterlab-settings").write_text(json.dumps(settings))
    port, token, log = free_port(), secrets.token_hex(16), state / "server.log"
    # JUPYTER_DATA_DIR and IPYTHONDIR are private too; the venv's kernelspecs stay found through sys.prefix.
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_DATA_DIR": str(state / "data"),
           "JUPYTER_RUNTIME_DIR": str(state / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"), "IPYTHONDIR": str(state / "ipython"),
           "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebook_dir}", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.getuid() == 0:
        command.append("--allow-root")
    server = LabServer(f"http://127.0.0.1:{port}", token)
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_answers(server, process, log, timeout_s)
        yield server
    except Exception:
        print(f"--- JupyterLab server log (tail) ---\n{log_tail(log)}", file=sys.stderr)  # shown by pytest
        raise
    finally:
        stop_server(server, process)
        shutil.rmtree(state, ignore_errors=True)


def wait_until_answers(server: LabServer, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll the status API: the port is open a little before the server can serve."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.url}/api/status?token={server.token}", timeout=5):
                return
        time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer within {timeout_s} s:\n{log_tail(log)}")


def stop_server(server: LabServer, process: subprocess.Popen) -> None:
    """Shut down through the API, which stops the kernels (they run in sessions of their own), then by signal."""
    with contextlib.suppress(OSError):
        request = urllib.request.Request(f"{server.url}/api/shutdown?token={server.token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a server that hung, and whatever it left in its group
    process.wait()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A page of headless Chromium on a fresh profile; ``page.console_errors`` collects the console's errors."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="reidlab-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.console_errors = []

            def keep_error(message):
                if message.type == "error":
                    page.console_errors.append(message.text)

            page.on("console", keep_error)
            page.on("pageerror", lambda error: page.console_errors.append(str(error)))
            yield page
        finally:
            context.close()


def wait_until(page, predicate: str, timeout_s: float, waiting_for: str, arg=None) -> None:
    """``page.wait_for_function``, whose timeout says what was awaited, with the kernel status and console errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(predicate, arg=arg, timeout=timeout_s * 1000, polling=250)
    except PlaywrightTimeout:
        kernel = page.locator(KERNEL_STATUS).all_inner_texts()
        raise TimeoutError(f"no {waiting_for} within {timeout_s:.0f} s (kernel: {kernel}); "
                           f"browser console errors: {getattr(page, 'console_errors', [])}") from None


def open_notebook(page, server: LabServer, relative_path: str, timeout_s: float = 120) -> None:
    """Open a notebook and wait for its kernel to be idle, accepting the kernel a "Select Kernel" dialog offers."""
    page.goto(server.lab_url(relative_path), timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(KERNEL_IDLE):
        wait_until(page, f"() => ({KERNEL_IDLE})() || document.querySelector('.jp-Dialog .jp-mod-accept')",
                   max(1.0, deadline - time.monotonic()), f"idle kernel in {relative_path}")
        if page.locator(".jp-Dialog .jp-mod-accept").count():
            page.locator(".jp-Dialog .jp-mod-accept").click()


def run_all_cells(page, timeout_s: float = 180) -> None:
    """Run every cell through the Run menu and wait for all to finish; a cell's error is raised with its text."""
    page.locator(".lm-MenuBar").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-content").get_by_text("Run All Cells", exact=True).click()
    # Done: every non-empty code cell numbered (no [*] left) and the kernel idle; or a traceback stopped the run.
    wait_until(page, f"""() => {{
        const notebook = document.querySelector('{CURRENT_NOTEBOOK}');
        if ([...notebook.querySelectorAll('{STDERR}')].some(output => output.textContent.includes('Traceback')))
            return true;
        return ({KERNEL_IDLE})() && [...notebook.querySelectorAll('.jp-CodeCell')]
            .filter(cell => cell.querySelector('.cm-content').textContent.trim())
            .every(cell => /\\[\\d+\\]/.test(cell.querySelector('.jp-InputPrompt').textContent));
    }}""", timeout_s, "end of the run of all cells")
    errors = page.locator(f"{CURRENT_NOTEBOOK} .jp-OutputArea-output{STDERR}", has_text="Traceback")
    if errors.count():
        raise AssertionError("a notebook cell failed:\n" + "\n\n".join(errors.all_inner_texts()))


def screenshot(page, locator, path: Path) -> Path:
    """A PNG of one element (scrolled into view), or of the whole page where ``locator`` is None."""
    if locator is None:
        page.screenshot(path=path, full_page=True)
    else:
        locator.screenshot(path=path)
    return Path(path)
