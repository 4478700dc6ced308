# Papermill notebooks: each renders one table or figure into results/notebooks/{name}.ipynb and .html.
# A notebook whose cell fails is kept, with the error, at logs/notebooks/{name}.ipynb.


rule notebook_table2:
    input:
        template=notebook_template("table2"),
        table="results/table2.csv",
        summary="results/table2_summary.csv",
    output:
        notebook="results/notebooks/table2.ipynb",
        html="results/notebooks/table2.html",
    log:
        notebook="logs/notebooks/table2.ipynb",
        stderr="logs/notebooks/table2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --failed-copy {log.notebook} -p table {input.table} -p summary {input.summary} > {log.stderr} 2>&1"


rule notebook_figure1:
    input:
        template=notebook_template("figure1"),
    output:
        figure="results/figures/figure1.png",
        notebook="results/notebooks/figure1.ipynb",
        html="results/notebooks/figure1.html",
    log:
        notebook="logs/notebooks/figure1.ipynb",
        stderr="logs/notebooks/figure1.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --failed-copy {log.notebook} -p figure {output.figure} > {log.stderr} 2>&1"
