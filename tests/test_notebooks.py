"""Running a papermill notebook: outputs appear only on success, a failure keeps a log copy."""

import nbformat
import pytest

from cce.pipeline.notebooks import NotebookFailed, run_notebook


def write_template(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    params = nbformat.v4.new_code_cell('value = "default"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def test_success_writes_notebook_and_log_copy(tmp_path):
    template = write_template(tmp_path / "ok.ipynb", "print(value)")
    out, log = tmp_path / "out" / "ok.ipynb", tmp_path / "logs" / "ok.ipynb"
    run_notebook(template, out, log_copy=log, parameters={"value": "given"})
    assert "given" in out.read_text() and "given" in log.read_text()


def test_failing_cell_names_the_cell_and_keeps_the_executed_notebook(tmp_path):
    template = write_template(tmp_path / "bad.ipynb", 'raise ValueError("boom " + value)')
    out, log = tmp_path / "out" / "bad.ipynb", tmp_path / "logs" / "bad.ipynb"
    with pytest.raises(NotebookFailed, match=f"ValueError: boom given; the executed notebook with the error is at {log}"):
        run_notebook(template, out, log_copy=log, parameters={"value": "given"})
    assert not out.exists()  # nothing that looks complete
    assert "boom given" in log.read_text()
