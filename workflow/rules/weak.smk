# Table 4: weakly-supervised classification. The runs are network_run jobs (deep.smk).


rule table4:
    input:
        records("weak"),
    output:
        table=report("results/table4.csv", caption="../report/table4.rst", category="Tables"),
        summary=report("results/table4_summary.csv", caption="../report/table4_summary.rst", category="Tables"),
    params:
        methods=(config.get("weak") or {}).get("methods", []),
        columns=table4_columns(),
    log:
        "logs/tables/table4.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.columns}"
        " --columns-by fraction --out {output.table} --summary-out {output.summary} > {log} 2>&1"
