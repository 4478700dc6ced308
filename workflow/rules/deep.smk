# Networks trained from scratch: one JSON record per (experiment, dataset, variant, seed) with the
# predictions beside it (on every image for deep, on the test images for weak and noisy), the tables
# of Table 3 and Table 6 (weak.smk: Table 4; noisy.smk: Figure 2). A job saves a checkpoint after
# every epoch under results/checkpoints/. It is not an output, so Snakemake keeps it when a job
# fails or is killed, and the job run again resumes from it; it is deleted once the record is
# written unless the experiment's keep_checkpoints is true.


rule network_run:
    # Every run that trains a network from scratch: deep (Tables 3, 6), weak (Table 4), noisy (Figure 2).
    input:
        lambda wc: manifest_path(wc.dataset),
    output:
        record=RECORD_PATTERN,
        predictions=PREDICTIONS_PATTERN,
    wildcard_constraints:
        experiment="|".join(NETWORK_EXPERIMENTS),
    params:
        root=DATA_ROOT,
        run=network_run_args,
        options=lambda wc: run_options_json(wc.experiment, wc.dataset, wc.variant),
        checkpoint=lambda wc: checkpoint_path(wc.experiment, wc.dataset, wc.variant, wc.seed),
        keep=lambda wc: "--keep-checkpoint" if config[wc.experiment].get("keep_checkpoints") else "",
    log:
        "logs/runs/{experiment}/{dataset}/{variant}/seed{seed}.log",
    threads: lambda wc: stage_resources(wc.experiment)["threads"]
    resources:
        mem_mb=lambda wc: stage_resources(wc.experiment)["mem_mb"],
        runtime=lambda wc: stage_resources(wc.experiment)["runtime"],
        gpu=lambda wc: stage_resources(wc.experiment)["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "python -m cce {wildcards.experiment} --dataset {wildcards.dataset} --root {params.root:q} {params.run}"
        " --seed {wildcards.seed} --options {params.options:q} --experiment {wildcards.experiment}"
        ' --config-name "${{CCE_CONFIG_FILES:-}}" --checkpoint {params.checkpoint:q} {params.keep}'
        " --out {output.record} --predictions {output.predictions} > {log} 2>&1"


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


rule empty_classes:
    # The empty-classes measurement at the scale of config/README.md ("Empty classes and the network's start"); not a
    # target of `all`: snakemake results/figures/empty_classes.png (about 30 CPU-minutes on one thread).
    input:
        manifest_path("fashion_mnist"),
    output:
        records="results/empty_classes/runs.jsonl",
        figure=report("results/figures/empty_classes.png", caption="../report/empty_classes.rst", category="Figures"),
    params:
        raw=f"{DATA_ROOT}/fashion_mnist/raw",
    log:
        "logs/empty_classes.log",
    conda:
        "../../environment.yml"
    shell:
        "python benchmarks/empty_classes.py run --raw {params.raw:q} --images 500 --eval-images 500 --epochs 3"
        " --out {output.records} > {log} 2>&1"
        " && python benchmarks/empty_classes.py report {output.records} --figure {output.figure} >> {log} 2>&1"


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


rule deep_study:
    # The deep study (config/deep_study.yaml; config/README.md, "The deep study"): every reading and seed in
    # one single-threaded job; a record per run under results/deep_study/ (kept: a rerun skips it; a killed
    # run resumes from its checkpoint there), their per-epoch curves in one CSV.
    input:
        lambda wc: manifest_path(config["deep_study"]["dataset"]),
    output:
        report("results/deep_study.csv", caption="../report/deep_study.rst", category="deep study"),
    params:
        root=DATA_ROOT,
        study=lambda wc: json.dumps(config["deep_study"], sort_keys=True),
    threads: 1
    log:
        "logs/tables/deep_study.log",
    conda:
        "../../environment.yml"
    shell:
        "OMP_NUM_THREADS=1 python benchmarks/deep_study.py --study {params.study:q} --root {params.root:q}"
        " --out results/deep_study --csv {output} > {log} 2>&1"


rule notebook_deep_study:
    input:
        template=notebook_template("deep_study"),
        study="results/deep_study.csv",
    output:
        figure=report("results/figures/deep_study.png", caption="../report/deep_study_figure.rst",
                      category="deep study"),
        notebook="results/notebooks/deep_study.ipynb",
        html=report("results/notebooks/deep_study.html", caption="../report/notebook.rst", category="Notebooks"),
    log:
        notebook="logs/notebooks/deep_study.ipynb",
        stderr="logs/notebooks/deep_study.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m cce notebook {input.template:q} --out {output.notebook} --html {output.html}"
        " --log-notebook {log.notebook} -p study {input.study} -p figure {output.figure} > {log.stderr} 2>&1"
