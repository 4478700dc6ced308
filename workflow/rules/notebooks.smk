# Papermill notebooks: each renders one table or figure into results/notebooks/{name}.ipynb and .html.
# The executed notebook is also kept at logs/notebooks/{name}.ipynb: a failing cell's error shows there.


rule notebook_table2:
    input:
        template=notebook_template("table2"),
        table="results/table2.csv",
        summary="results/table2_summary.csv",
    output:
        figure=report("results/figures/table2.png", caption="../report/table_figure.rst", category="Figures"),
        notebook="results/notebooks/table2.ipynb",
        html=report("results/notebooks/table2.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table2.ipynb",
        stderr="logs/notebooks/table2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p figure {output.figure} -p summary {input.summary}"
        " > {log.stderr} 2>&1"


rule notebook_figure:
    # The figures drawn from the paper's formulas alone: Figure 1 (H2 and H) and Figure 3 (eq. 17).
    input:
        template=lambda wc: notebook_template(wc.figure),
    output:
        figure=report("results/figures/{figure}.png", caption="../report/figure.rst", category="Figures"),
        notebook="results/notebooks/{figure}.ipynb",
        html=report("results/notebooks/{figure}.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/{figure}.ipynb",
        stderr="logs/notebooks/{figure}.log",
    wildcard_constraints:
        figure="figure1|figure3",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p figure {output.figure} > {log.stderr} 2>&1"


rule notebook_table5:
    input:
        template=notebook_template("table5"),
        table="results/table5.csv",
    output:
        figure=report("results/figures/table5.png", caption="../report/table_figure.rst", category="Figures"),
        notebook="results/notebooks/table5.ipynb",
        html=report("results/notebooks/table5.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table5.ipynb",
        stderr="logs/notebooks/table5.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p figure {output.figure} > {log.stderr} 2>&1"


rule notebook_lambda:
    input:
        template=notebook_template("lambda"),
        study="results/lam_study.csv",
    output:
        figure=report("results/figures/lambda.png", caption="../report/lambda.rst", category="lam study"),
        notebook="results/notebooks/lambda.ipynb",
        html=report("results/notebooks/lambda.html", caption="../report/notebook.rst", category="Notebooks"),
    params:
        method=config.get("lam_study", {}).get("method", "cce_plus"),
    log:
        notebook="logs/notebooks/lambda.ipynb",
        stderr="logs/notebooks/lambda.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p study {input.study} -p figure {output.figure}"
        " -p method {params.method} > {log.stderr} 2>&1"


rule notebook_table1:
    input:
        template=notebook_template("table1"),
        table="results/table1.csv",
        summary="results/table1_speedup.csv",
        trajectories="results/table1_trajectories.json",
    output:
        notebook="results/notebooks/table1.ipynb",
        html=report("results/notebooks/table1.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table1.ipynb",
        stderr="logs/notebooks/table1.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p summary {input.summary}"
        " -p trajectories {input.trajectories} > {log.stderr} 2>&1"


rule notebook_table3:
    input:
        template=notebook_template("table3"),
        table="results/table3.csv",
        summary="results/table3_summary.csv",
    output:
        figure=report("results/figures/table3.png", caption="../report/table_figure.rst", category="Figures"),
        notebook="results/notebooks/table3.ipynb",
        html=report("results/notebooks/table3.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table3.ipynb",
        stderr="logs/notebooks/table3.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p figure {output.figure} -p summary {input.summary}"
        " > {log.stderr} 2>&1"


rule notebook_table6:
    input:
        template=notebook_template("table6"),
        table="results/table6.csv",
    output:
        figure=report("results/figures/table6.png", caption="../report/table_figure.rst", category="Figures"),
        notebook="results/notebooks/table6.ipynb",
        html=report("results/notebooks/table6.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table6.ipynb",
        stderr="logs/notebooks/table6.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p figure {output.figure} > {log.stderr} 2>&1"


rule notebook_learning_curves:
    input:
        template=notebook_template("learning_curves"),
        curves="results/deep_curves.csv",
    output:
        figure=report("results/figures/learning_curves.png", caption="../report/learning_curves.rst",
                      category="Figures"),
        notebook="results/notebooks/learning_curves.ipynb",
        html=report("results/notebooks/learning_curves.html", caption="../report/notebook.rst",
                    category="Notebooks"),
    log:
        notebook="logs/notebooks/learning_curves.ipynb",
        stderr="logs/notebooks/learning_curves.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p curves {input.curves} -p figure {output.figure} > {log.stderr} 2>&1"


rule notebook_table4:
    input:
        template=notebook_template("table4"),
        table="results/table4.csv",
        summary="results/table4_summary.csv",
    output:
        figure=report("results/figures/table4.png", caption="../report/table_figure.rst", category="Figures"),
        notebook="results/notebooks/table4.ipynb",
        html=report("results/notebooks/table4.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/table4.ipynb",
        stderr="logs/notebooks/table4.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p table {input.table} -p figure {output.figure} -p summary {input.summary}"
        " > {log.stderr} 2>&1"


rule notebook_figure2:
    input:
        template=notebook_template("figure2"),
        summary="results/figure2.csv",
        runs="results/figure2_runs.csv",
    output:
        figure=report("results/figures/figure2.png", caption="../report/figure2.rst", category="Figures"),
        notebook="results/notebooks/figure2.ipynb",
        html=report("results/notebooks/figure2.html", caption="../report/notebook.rst", category="Notebooks"),
    params:
        network=lambda wc: (config.get("noisy") or {}).get("training", {}).get("network", "resnet18"),
    log:
        notebook="logs/notebooks/figure2.ipynb",
        stderr="logs/notebooks/figure2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p summary {input.summary} -p runs {input.runs}"
        " -p figure {output.figure} -p network {params.network} > {log.stderr} 2>&1"
