"""Execute a papermill notebook template and render it to HTML, atomically.

The executed notebook appears at its output path only when every cell ran.
A copy of the executed notebook also goes to ``log_copy`` (the rule's log), so
that when a cell fails the notebook, with the error in it, can be read there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..io import atomic_path

KERNEL = "python3"


class NotebookFailed(RuntimeError):
    pass


def render_html(notebook: Path | str, html: Path | str) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    with atomic_path(html) as tmp:
        Path(tmp).write_text(body)


def run_notebook(
    template: Path | str,
    out: Path | str,
    html: Path | str | None = None,
    log_copy: Path | str | None = None,
    parameters: dict[str, Any] | None = None,
) -> None:
    import papermill as pm

    template, out = Path(template), Path(out)
    with atomic_path(out, suffix=".ipynb") as tmp:
        try:
            pm.execute_notebook(str(template), str(tmp), parameters=parameters or {}, kernel_name=KERNEL,
                                progress_bar=False, cwd=str(Path.cwd()))
        except pm.PapermillExecutionError as err:
            where = f"; the executed notebook with the error is at {log_copy}" if log_copy is not None else ""
            raise NotebookFailed(f"{template}: cell {err.exec_count} failed: {err.ename}: {err.evalue}{where}") from err
        finally:
            if log_copy is not None and Path(tmp).is_file():  # absent when the kernel never started
                Path(log_copy).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp, log_copy)
    if html is not None:
        render_html(out, html)
