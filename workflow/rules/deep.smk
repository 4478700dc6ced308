# Networks trained from scratch (Table 3, Table 6): one JSON record per (dataset, method, seed).
# A job saves a checkpoint after every epoch under results/checkpoints/. It is not an output, so
# Snakemake keeps it when a job fails or is killed, and the job run again resumes from it; it is
# deleted once the record is written unless deep.keep_checkpoints is true.


rule deep_run:
    input:
        lambda wc: manifest_path(wc.dataset),
    output:
        "results/runs/deep/{dataset}/{variant}/seed{seed}.json",
    params:
        root=DATA_ROOT,
        method=lambda wc: parse_variant(wc.variant)[0],
        options=lambda wc: run_options_json("deep", wc.dataset, wc.variant),
        checkpoint=lambda wc: deep_checkpoint_path(wc.dataset, wc.variant, wc.seed),
        keep="--keep-checkpoint" if config.get("deep", {}).get("keep_checkpoints") else "",
    log:
        "logs/runs/deep/{dataset}/{variant}/seed{seed}.log",
    threads: stage_resources("deep")["threads"]
    resources:
        mem_mb=stage_resources("deep")["mem_mb"],
        runtime=stage_resources("deep")["runtime"],
        gpu=stage_resources("deep")["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce deep --dataset {wildcards.dataset} --root {params.root:q} --method {params.method}"
        " --seed {wildcards.seed} --options {params.options:q} --experiment deep"
        ' --config-name "${{CCE_CONFIG_FILES:-}}" --checkpoint {params.checkpoint:q} {params.keep}'
        " --out {output} > {log} 2>&1"


rule table3:
    input:
        records("deep", methods=TABLE3_METHODS),
    output:
        table=report("results/table3.csv", caption="../report/table3.rst", category="Tables"),
        summary=report("results/table3_summary.csv", caption="../report/table3_summary.rst", category="Tables"),
    params:
        methods=TABLE3_METHODS,
        datasets=config.get("deep", {}).get("datasets", []),
    log:
        "logs/tables/table3.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.datasets}"
        " --out {output.table} --summary-out {output.summary} > {log} 2>&1"


rule table6:
    input:
        records("deep", methods=TABLE6_METHODS),
    output:
        report("results/table6.csv", caption="../report/table6.rst", category="Tables"),
    params:
        methods=TABLE6_METHODS,
        datasets=config.get("deep", {}).get("datasets", []),
    log:
        "logs/tables/table6.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce table --runs {input} --methods {params.methods} --datasets {params.datasets}"
        " --out {output} > {log} 2>&1"


rule deep_curves:
    input:
        records("deep"),
    output:
        "results/deep_curves.csv",
    log:
        "logs/tables/deep_curves.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce curves --runs {input} --out {output} > {log} 2>&1"
