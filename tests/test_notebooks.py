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


def warnings_and_errors(notebook) -> list[str]:
    """Every output of an executed notebook that a reader sees as a warning or an error: error outputs and
    anything written to stderr (Python's warnings go there, as do progress bars)."""
    nb = nbformat.read(str(notebook), as_version=4)
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{out['ename']}: {out['evalue']}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(out["text"])
    return found


def test_library_leaves_no_warning_in_a_notebook(tmp_path):
    """The modules the notebooks import, imported and used in a notebook kernel: no warning block. tqdm.auto
    in the training loop printed 'TqdmWarning: IProgress not found' into every table's notebook."""
    body = ("import cce.training.head, cce.pipeline.tables, cce.pipeline.figures, cce.pipeline.table1\n"
            "from cce.pipeline.figures import table_figure\n"
            "from cce.pipeline.tables import paper_table\n"
            "fig = table_figure(paper_table('table3').drop(columns='title'), paper_table('table3'))\n"
            "print('drawn')")
    template = write_template(tmp_path / "imports.ipynb", body)
    out = tmp_path / "out" / "imports.ipynb"
    run_notebook(template, out)
    assert "drawn" in out.read_text()
    assert warnings_and_errors(out) == []


def test_templates_are_committed_without_outputs(repo):
    """The templates in notebooks/ hold code and text only: outputs belong to results/notebooks/, and a
    template with stale outputs shows numbers that no run of this checkout made."""
    templates = sorted((repo / "notebooks").glob("*.ipynb"))
    assert templates
    for path in templates:
        nb = nbformat.read(str(path), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path.name
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in code), path.name  # papermill injects after it
