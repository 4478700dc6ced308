# Clustering of fixed features: Table 2, Table 5 and the lam study.
# One JSON record per (experiment, dataset, variant, seed), and the predictions beside it (the cluster
# galleries draw them); tables aggregate the records.


rule clustering_run:
    input:
        lambda wc: features_path(wc.dataset, config[wc.experiment]["extractor"]),
    output:
        record=RECORD_PATTERN,
        predictions=PREDICTIONS_PATTERN,
    params:
        method=lambda wc: parse_variant(wc.variant)[0],
        options=lambda wc: run_options_json(wc.experiment, wc.dataset, wc.variant),
    log:
        "logs/runs/{experiment}/{dataset}/{variant}/seed{seed}.log",
    threads: stage_resources("clustering")["threads"]
    resources:
        mem_mb=stage_resources("clustering")["mem_mb"],
        runtime=stage_resources("clustering")["runtime"],
        gpu=stage_resources("clustering")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce cluster --features {input} --method {params.method} --seed {wildcards.seed}"
        " --experiment {wildcards.experiment} --options {params.options:q}"
        ' --config-name "${{CCE_CONFIG_FILES:-}}" --out {output.record} --predictions {output.predictions}'
        " > {log} 2>&1"


rule table2:
    input:
        records("clustering"),
    output:
        table=report("results/table2.csv", caption="../report/table2.rst", category="Tables"),
        summary=report("results/table2_summary.csv", caption="../report/table2_summary.rst", category="Tables"),
    params:
        methods=config["clustering"]["methods"],
        datasets=config["clustering"]["datasets"],
    log:
        "logs/tables/table2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.datasets}"
        " --out {output.table} --summary-out {output.summary} > {log} 2>&1"


rule table5:
    input:
        records("clustering", methods=TABLE5_METHODS),
    output:
        report("results/table5.csv", caption="../report/table5.rst", category="Tables"),
    params:
        methods=TABLE5_METHODS,
        datasets=config["clustering"]["datasets"],
    log:
        "logs/tables/table5.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.datasets}"
        " --out {output} > {log} 2>&1"


rule lam_study:
    input:
        records("lam_study"),
    output:
        report("results/lam_study.csv", caption="../report/lam_study.rst", category="lam study"),
    log:
        "logs/tables/lam_study.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce summarize --runs {input} --by dataset method lam_scale lam --out {output} > {log} 2>&1"
