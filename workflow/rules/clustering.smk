# Table 2 / Table 5: every method on fixed features, one JSON record per (dataset, method, seed).


rule clustering_run:
    input:
        lambda wc: features_path(wc.dataset, CLUSTERING["extractor"]),
    output:
        "results/runs/clustering/{dataset}/{method}/seed{seed}.json",
    params:
        options=lambda wc: run_options("clustering", wc.dataset, wc.method),
        config_files=CONFIG_FILES,
    log:
        "logs/runs/clustering/{dataset}/{method}/seed{seed}.log",
    threads: stage_resources("clustering")["threads"]
    resources:
        mem_mb=stage_resources("clustering")["mem_mb"],
        runtime=stage_resources("clustering")["runtime"],
        gpu=stage_resources("clustering")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce cluster --features {input} --method {wildcards.method} --seed {wildcards.seed}"
        " --options {params.options:q} --config-name {params.config_files:q} --out {output} > {log} 2>&1"


rule table2:
    input:
        clustering_records(),
    output:
        table="results/table2.csv",
        summary="results/table2_summary.csv",
    params:
        methods=CLUSTERING["methods"],
        datasets=CLUSTERING["datasets"],
    log:
        "logs/tables/table2.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.datasets}"
        " --out {output.table} --summary-out {output.summary} > {log} 2>&1"
